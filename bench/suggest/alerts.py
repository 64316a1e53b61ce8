"""Suggestions on the 111 real OCSF alerts, scored against the ATT&CK tags of
the Sigma rule that raised each alert (the alerts carry no mapping themselves).
Usage: python3 alerts.py  (needs target/release/examples/batch built)."""
import json, re, subprocess, sys, tarfile
SH = '/work/shared'
rules = {}
with tarfile.open(f'{SH}/sigma/sigma-rules-c5e6d0ecd.tar.gz') as tf:
    for m in tf.getmembers():
        if not m.name.endswith('.yml'): continue
        txt = tf.extractfile(m).read().decode('utf-8', 'replace')
        mid = re.search(r'^id:\s*([0-9a-f-]{36})', txt, re.M)
        if not mid: continue
        tags = re.findall(r'attack\.(t\d{4}(?:\.\d{3})?)\b', txt)
        rules[mid.group(1)] = sorted({t.upper() for t in tags})
inputs, truth = [], []
only_fields = len(sys.argv) > 1 and sys.argv[1] == 'fields'
for line in open(f'{SH}/alerts/sigma-regression-alerts.ndjson'):
    a = json.loads(line)
    fi = a.get('finding_info', {})
    proc = a.get('process') or {}
    ed = (a.get('unmapped') or {}).get('event_data') or {}
    inp = {
        'command_line': proc.get('cmd_line') or ed.get('CommandLine'),
        'process_name': ((proc.get('file') or {}).get('path')) or ed.get('Image'),
        'parent_process': (((proc.get('parent_process') or {}).get('file') or {}).get('path')) or ed.get('ParentImage'),
        'event_id': str((a.get('unmapped') or {}).get('event_id', '')),
        'registry_path': ed.get('TargetObject'),
    }
    if not only_fields:
        inp['title'] = fi.get('title'); inp['description'] = fi.get('desc')
    inputs.append({k: v for k, v in inp.items() if v})
    truth.append(rules.get(fi.get('analytic', {}).get('uid'), []))
out = subprocess.run(['/work/main/target/release/examples/batch'], input='\n'.join(json.dumps(i) for i in inputs) + '\n',
                     capture_output=True, text=True, check=True).stdout.splitlines()
n = h1 = h3 = p1 = capped = 0
for t, o in zip(truth, out):
    if not t: continue
    s = [x['technique'] for x in json.loads(o)['suggestions']]
    n += 1
    h1 += bool(s[:1] and s[0] in t); h3 += any(x in t for x in s[:3])
    par = {x.split('.')[0] for x in t}
    p1 += bool(s[:1] and s[0].split('.')[0] in par)
    capped += bool(s and json.loads(o)['suggestions'][0]['capped'])
print(f'alerts with tagged rule: {n}/{len(truth)}; hit@1={h1/n:.3f} hit@3={h3/n:.3f} parent@1={p1/n:.3f} top capped={capped/n:.3f}')
