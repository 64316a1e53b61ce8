import re, time, numpy as np
from load import load
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.svm import LinearSVC
from sklearn.naive_bayes import ComplementNB, MultinomialNB
techs, procs = load()
def clean(t, mask=True):
    t = re.sub(r'\(Citation:[^)]*\)', ' ', t)
    t = re.sub(r'\[([^\]]*)\]\(https?://attack\.mitre\.org/(software|groups|campaigns)/[^)]*\)', ' ACTOR ' if mask else r'\1', t)
    t = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', t)
    t = re.sub(r'<[^>]+>', ' ', t)
    return t
tr = [p for p in procs if not p['test']]; te = [p for p in procs if p['test']]
Xtr_txt = [clean(p['text']) for p in tr]; ytr = [p['tech'] for p in tr]
# add technique text as training docs
for t in techs.values():
    Xtr_txt.append(t['name']+'. '+t['name']+'. '+clean(t['desc'])); ytr.append(t['id'])
Xte_txt = [clean(p['text']) for p in te]; yte = np.array([p['tech'] for p in te])
def ev(name, scores, classes):
    order = np.argsort(-scores, axis=1)
    top = classes[order[:, :5]]
    r1 = np.mean(top[:,0]==yte); r3 = np.mean([y in t[:3] for y,t in zip(yte,top)]); r5=np.mean([y in t[:5] for y,t in zip(yte,top)])
    par = np.mean([a.split('.')[0]==b.split('.')[0] for a,b in zip(top[:,0],yte)])
    print(f'{name}: r1={r1:.3f} r3={r3:.3f} r5={r5:.3f} par1={par:.3f}', flush=True)
for ng,sub in [((1,2),True)]:
    v = TfidfVectorizer(ngram_range=ng, sublinear_tf=True, min_df=2, stop_words='english')
    Xtr = v.fit_transform(Xtr_txt); Xte = v.transform(Xte_txt)
    print(Xtr.shape)
    for a in [0.1,0.3]:
        m = ComplementNB(alpha=a).fit(Xtr, ytr); ev(f'CNB a={a}', m.predict_log_proba(Xte) if False else m.decision_function(Xte) if hasattr(m,'decision_function') else m.predict_joint_log_proba(Xte), m.classes_)
    t0=time.time(); m = LinearSVC(C=0.5).fit(Xtr, ytr); ev('LinearSVC C=0.5', m.decision_function(Xte), m.classes_); print(time.time()-t0)
    t0=time.time(); m = SGDClassifier(loss='log_loss', alpha=2e-5, max_iter=15, tol=None).fit(Xtr, ytr); ev('SGD log', m.decision_function(Xte), m.classes_); print(time.time()-t0)
    # centroid
    from sklearn.preprocessing import normalize, LabelEncoder
    le = LabelEncoder().fit(ytr); yi = le.transform(ytr)
    import scipy.sparse as sp
    Y = sp.csr_matrix((np.ones(len(yi)),(yi,np.arange(len(yi)))))
    C = normalize(Y@Xtr); ev('centroid', (Xte@C.T).toarray(), le.classes_)
