"""Ensembles of cheap-to-train models: centroid + Complement NB (+ kNN)."""
import re, numpy as np, scipy.sparse as sp
from load import load
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize, LabelEncoder
from sklearn.naive_bayes import ComplementNB
techs, procs = load()
def clean(t):
    t = re.sub(r'\(Citation:[^)]*\)', ' ', t)
    t = re.sub(r'\[([^\]]*)\]\(https?://attack\.mitre\.org/(software|groups|campaigns)/[^)]*\)', ' ', t)
    t = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', t)
    return re.sub(r'<[^>]+>', ' ', t)
tr=[p for p in procs if not p['test']]; te=[p for p in procs if p['test']]
yte=np.array([p['tech'] for p in te])
X=[clean(p['text']) for p in tr]; y=[p['tech'] for p in tr]; n=len(X)
for t in techs.values(): X.append(t['name']+'. '+t['name']+'. '+clean(t['desc'])); y.append(t['id'])
v=TfidfVectorizer(ngram_range=(1,2), sublinear_tf=True, min_df=2); Xm=v.fit_transform(X); Xt=v.transform([clean(p['text']) for p in te])
le=LabelEncoder().fit(y); yi=le.transform(y); w=np.ones(len(yi)); w[n:]=5
C=normalize(sp.csr_matrix((w,(yi,np.arange(len(yi)))))@Xm); S=(Xt@C.T).toarray()
def ev(name, scores):
    top=le.classes_[np.argsort(-scores,axis=1)[:,:3]]
    print(name, round(np.mean(top[:,0]==yte),4), round(np.mean([a in b for a,b in zip(yte,top)]),4), flush=True)
ev('centroid', S)
m=ComplementNB(alpha=0.3).fit(Xm, y, sample_weight=w); N=m.predict_joint_log_proba(Xt) if hasattr(m,'predict_joint_log_proba') else m.decision_function(Xt)
ev('cnb', N)
def z(a): return (a-a.mean(1,keepdims=True))/(a.std(1,keepdims=True)+1e-9)
for a in [0.3,0.5,1.0]:
    ev(f'centroid z + {a} cnb z', z(S)+a*z(N))
