import re, hashlib, numpy as np, scipy.sparse as sp
from load import load
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize, LabelEncoder
from sklearn.isotonic import IsotonicRegression
techs, procs = load()
def clean(t):
    t = re.sub(r'\(Citation:[^)]*\)', ' ', t)
    t = re.sub(r'\[([^\]]*)\]\(https?://attack\.mitre\.org/(software|groups|campaigns)/[^)]*\)', ' ', t)
    t = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', t)
    return re.sub(r'<[^>]+>', ' ', t)
def calib(p): return int.from_bytes(hashlib.sha256(('calibration:'+p['id']).encode()).digest(),'big')%5==0
def model(train):
    X = [clean(p['text']) for p in train]; y=[p['tech'] for p in train]; n=len(X)
    for t in techs.values(): X.append(t['name']+'. '+t['name']+'. '+clean(t['desc'])); y.append(t['id'])
    v = TfidfVectorizer(ngram_range=(1,2), sublinear_tf=True, min_df=2)
    Xm = v.fit_transform(X); le = LabelEncoder().fit(y); yi=le.transform(y)
    w=np.ones(len(yi)); w[n:]=3
    C = normalize(sp.csr_matrix((w,(yi,np.arange(len(yi)))))@Xm)
    return lambda txts: ((v.transform([clean(t) for t in txts])@C.T).toarray(), le.classes_)
def feats(S, T):
    S2 = np.sort(S,axis=1)[:,::-1]
    e = np.exp((S2[:,:10]-S2[:,:1])/T); return e[:,0]/e.sum(1), S2[:,0], S2[:,0]-S2[:,1]
def ece(conf, corr, b=10):
    idx = np.minimum((conf*b).astype(int), b-1); e=0
    for k in range(b):
        m = idx==k
        if m.any(): e += m.mean()*abs(conf[m].mean()-corr[m].mean())
    return e
tr=[p for p in procs if not p['test']]; te=[p for p in procs if p['test']]
fit=[p for p in tr if not calib(p)]; cal=[p for p in tr if calib(p)]
m1 = model(fit); Sc, cls = m1([p['text'] for p in cal]); yc=np.array([p['tech'] for p in cal])
cc = cls[Sc.argmax(1)]==yc
m2 = model(tr); St, cls2 = m2([p['text'] for p in te]); yt=np.array([p['tech'] for p in te]); ct = cls2[St.argmax(1)]==yt
print('acc cal', cc.mean(), 'acc test', ct.mean())
for T in [0.02,0.05,0.1]:
  for i,nm in enumerate(['softmax','top','margin']):
    if nm!='softmax' and T!=0.05: continue
    xc = feats(Sc,T)[i]; xt = feats(St,T)[i]
    ir = IsotonicRegression(out_of_bounds='clip', y_min=0, y_max=1).fit(xc, cc)
    pt = ir.predict(xt)
    from sklearn.metrics import roc_auc_score
    print(T, nm, 'ECE', round(ece(pt, ct),4), 'AUC', round(roc_auc_score(ct, xt),3))
