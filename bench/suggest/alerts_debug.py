import json, subprocess, sys
sys.argv = ['x']
exec(open('alerts.py').read().split("out = subprocess")[0])
out = subprocess.run(['/work/main/target/release/examples/batch'], input='\n'.join(json.dumps(i) for i in inputs) + '\n', capture_output=True, text=True, check=True).stdout.splitlines()
for inp, t, o in list(zip(inputs, truth, out))[:40]:
    s = json.loads(o)['suggestions']
    ok = bool(s) and s[0]['technique'] in t
    print('OK ' if ok else 'BAD', t, [(x['technique'], x['name'][:25], round(x['confidence'],2)) for x in s[:3]], '|', (inp.get('title') or '')[:70])
