import re, time, numpy as np, scipy.sparse as sp
from load import load
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize, LabelEncoder
techs, procs = load()
def clean(t, mask=True):
    t = re.sub(r'\(Citation:[^)]*\)', ' ', t)
    t = re.sub(r'\[([^\]]*)\]\(https?://attack\.mitre\.org/(software|groups|campaigns)/[^)]*\)', ' ' if mask else r'\1', t)
    t = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', t)
    t = re.sub(r'<[^>]+>', ' ', t)
    return t
tr = [p for p in procs if not p['test']]; te = [p for p in procs if p['test']]
yte = np.array([p['tech'] for p in te])
def ev(name, scores, classes):
    order = np.argsort(-scores, axis=1)
    top = classes[order[:, :5]]
    r1 = np.mean(top[:,0]==yte); r3 = np.mean([y in t[:3] for y,t in zip(yte,top)]); r5=np.mean([y in t[:5] for y,t in zip(yte,top)])
    par = np.mean([a.split('.')[0]==b.split('.')[0] for a,b in zip(top[:,0],yte)])
    print(f'{name}: r1={r1:.3f} r3={r3:.3f} r5={r5:.3f} par1={par:.3f}', flush=True)
def run(mask=True, ng=(1,2), sub=True, techw=1.0, stop='english', min_df=2, knn=0.0, k=10):
    Xtr_txt = [clean(p['text'],mask) for p in tr]; ytr = [p['tech'] for p in tr]
    ntr=len(Xtr_txt)
    for t in techs.values():
        Xtr_txt.append(t['name']+'. '+t['name']+'. '+clean(t['desc'])); ytr.append(t['id'])
    Xte_txt = [clean(p['text'],mask) for p in te]
    v = TfidfVectorizer(ngram_range=ng, sublinear_tf=sub, min_df=min_df, stop_words=stop)
    Xtr = v.fit_transform(Xtr_txt); Xte = v.transform(Xte_txt)
    le = LabelEncoder().fit(ytr); yi = le.transform(ytr)
    w = np.ones(len(yi)); w[ntr:] = techw
    Y = sp.csr_matrix((w,(yi,np.arange(len(yi)))))
    C = normalize(Y@Xtr); S = (Xte@C.T).toarray()
    ev(f'centroid mask={mask} ng={ng} techw={techw} stop={stop} min_df={min_df}', S, le.classes_)
    if knn:
        sims = (Xte@Xtr[:ntr].T).toarray()
        K = np.zeros_like(S)
        idx = np.argsort(-sims,axis=1)[:,:k]
        for i in range(len(te)):
            for j in idx[i]: K[i, yi[j]] = max(K[i, yi[j]], sims[i,j])
        ev(' knn', K, le.classes_)
        for a in [0.2,0.4]:
            ev(f' mix {a}', S + a*K, le.classes_)
run()
run(mask=False)
run(ng=(1,1))
run(techw=3.0)
run(stop=None)
run(min_df=1, knn=1)
