import gzip, json, hashlib, re
def load(path='/work/shared/attack/enterprise-attack-18.1.json.gz'):
    b = json.load(gzip.open(path))
    objs = b['objects']
    live = lambda o: not o.get('revoked') and not o.get('x_mitre_deprecated')
    techs = {}
    for o in objs:
        if o['type']=='attack-pattern' and live(o):
            tid = [r['external_id'] for r in o.get('external_references',[]) if r.get('source_name')=='mitre-attack'][0]
            techs[o['id']] = dict(id=tid, name=o['name'], desc=o.get('description',''), det=o.get('x_mitre_detection',''))
    names = {o['id']: o.get('name') for o in objs}
    procs = []
    for o in objs:
        if o['type']=='relationship' and o['relationship_type']=='uses' and live(o) and o['target_ref'] in techs and o.get('description','').strip():
            h = int.from_bytes(hashlib.sha256(o['id'].encode()).digest(),'big')
            procs.append(dict(id=o['id'], tech=techs[o['target_ref']]['id'], text=o['description'], src=names.get(o['source_ref']), test=(h%5==0)))
    return techs, procs
if __name__=='__main__':
    t,p = load()
    print(len(t), len(p), sum(x['test'] for x in p))
    import random
    for x in random.sample(p,5): print(x['tech'], x['src'], '|', x['text'][:300])
    print(sum(1 for x in t.values() if x['det']))
