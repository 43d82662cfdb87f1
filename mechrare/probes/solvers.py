"""Solvers that fit many linear probes at once: batched torch programs (CPU or GPU) and,
for logistic probes on a CPU, SciPy one problem at a time.

P independent problems share one tensor program. Problem p has features
``X[p]`` ([N, d]), labels ``y[p]`` ([N], in 0 .. K_p - 1), example weights
``w[p]`` ([N]; 0 marks padding) and a class mask ([K]; False marks padding
classes), so problems with different example and class counts pad into one
batch.

Logistic: multinomial, minimising (as scikit-learn's ``LogisticRegression``
with the same ``C``) ``C * sum_i w_i CE_i + ||W||^2 / 2``, intercept not
penalised. A two-class problem uses C / 2 on its two class vectors, which is
exactly scikit-learn's binary objective on their difference. The objectives are independent, so one L-BFGS run over their sum
optimises each. Ridge: one-hot least squares ``||Y - X W - b||^2 + alpha ||W||^2``
solved in closed form (a batched Cholesky solve), predicting the argmax.
"""

from __future__ import annotations

from dataclasses import dataclass

NEG = -1e9


@dataclass
class LinearModels:
    """Fitted weights of P probes: ``logits = X @ W + b`` ([P, d, K], [P, K])."""

    W: "object"
    b: "object"
    class_mask: "object"
    n_iter: int = 0

    def logits(self, X):
        import torch

        out = torch.einsum("pnd,pdk->pnk", X.to(self.W.dtype), self.W) + self.b[:, None, :]
        return out.masked_fill(~self.class_mask[:, None, :], NEG)

    def predict(self, X):
        return self.logits(X).argmax(-1)


def _prepare(X, y, w, class_mask, dtype):
    import torch

    X = torch.as_tensor(X)
    # float64 on CPU; float32 on GPU (seen on an H100: the same probe accuracies, faster)
    dtype = dtype or (torch.float64 if X.device.type == "cpu" else torch.float32)
    X = X.to(dtype)
    y = torch.as_tensor(y, device=X.device).long()
    w = torch.ones(y.shape, dtype=dtype, device=X.device) if w is None else torch.as_tensor(w, device=X.device).to(dtype)
    if class_mask is None:
        k = int(y.max()) + 1
        class_mask = torch.ones(y.shape[0], k, dtype=torch.bool, device=X.device)
    class_mask = torch.as_tensor(class_mask, device=X.device).bool()
    return X, y, w, class_mask


def batched_lbfgs(objective, x, max_iter: int = 200, tol: float = 1e-6, history: int = 10, max_backtracks: int = 30, compact: float = 0.75):
    """Minimise P independent smooth objectives at once.

    ``objective(idx)`` returns ``value_and_grad`` for the problems ``idx`` (a
    LongTensor into the P problems): ``value_and_grad(z, grad=True) -> (f, g)``
    maps ``z`` ([len(idx), D]) to their objective values and gradients. Each
    problem keeps its own L-BFGS history and its own Armijo backtracking step, so
    it converges at its own rate; a problem stops once its gradient's max-norm is
    below ``tol`` (it never moves again). When fewer than ``compact`` of the
    problems still move, the finished ones are dropped from the batch, so the
    slow ones do not make every problem pay for their iterations; the result is
    the same as without compaction. Returns (x, iterations of the slowest)."""
    import torch

    out = x.clone()
    idx = torch.arange(x.shape[0], device=x.device)
    value_and_grad = objective(idx)
    f, g = value_and_grad(x)
    hist: list[tuple] = []
    it = 0
    for it in range(1, max_iter + 1):
        active = g.abs().amax(1) > tol
        n_active = int(active.sum())
        if n_active == 0:
            break
        if n_active < compact * len(idx):  # drop the finished problems
            out[idx] = x
            keep = active.nonzero()[:, 0]
            idx, x, f, g, active = idx[keep], x[keep], f[keep], g[keep], active[keep]
            hist = [(s_[keep], y_[keep], rho[keep]) for s_, y_, rho in hist]
            value_and_grad = objective(idx)
        dot = torch.linalg.vecdot
        q = g.clone()
        alphas = []
        for s_, y_, rho in reversed(hist):
            a = rho * dot(s_, q)
            q.addcmul_(a[:, None], y_, value=-1)
            alphas.append(a)
        if hist:
            s_, y_, _ = hist[-1]
            gamma = dot(s_, y_) / dot(y_, y_).clamp(min=1e-30)
        else:
            gamma = 1.0 / g.norm(dim=1).clamp(min=1.0)
        r = gamma[:, None] * q
        for (s_, y_, rho), a in zip(hist, reversed(alphas)):
            r.addcmul_(s_, (a - rho * dot(y_, r))[:, None])
        d = -r
        slope = dot(g, d)
        bad = slope >= 0  # not a descent direction: fall back to the gradient
        d[bad] = -g[bad]
        slope = torch.where(bad, -dot(g, g), slope)
        d[~active] = 0
        t = torch.ones_like(f)
        slack = 16 * torch.finfo(f.dtype).eps * (1 + f.abs())  # rounding near the optimum
        # the full step first, with its gradient: it is taken almost always, and then one evaluation does
        x_new = x + d
        f_new, g_new = value_and_grad(x_new)
        ok = f_new <= f + 1e-4 * slope + slack
        if not bool(ok.all()):  # Armijo backtracking, per problem
            for _ in range(max_backtracks):
                t = torch.where(ok, t, 0.5 * t)
                ok = value_and_grad(x + t[:, None] * d, grad=False)[0] <= f + 1e-4 * t * slope + slack
                if bool(ok.all()):
                    break
            x_new = x + t[:, None] * d
            f_new, g_new = value_and_grad(x_new)
        s_, y_ = x_new - x, g_new - g
        sy = dot(s_, y_)
        hist.append((s_, y_, torch.where(sy > 1e-12, 1.0 / sy.clamp(min=1e-12), torch.zeros_like(sy))))
        if len(hist) > history:
            hist.pop(0)
        x, f, g = x_new.detach(), f_new, g_new
    out[idx] = x
    return out, it


def fit_logistic_many(X, y, w=None, class_mask=None, C: float = 1.0, max_iter: int = 300, tol: float | None = None, dtype=None,
                      compact: float = 0.75) -> LinearModels:
    """Fit P multinomial logistic probes at once. See the module docstring (``compact``: see
    :func:`batched_lbfgs`; 0 never drops finished problems).

    Each objective is divided by C * (sum of its weights), as scikit-learn does,
    so ``tol`` bounds the max-norm of the gradient of the mean loss (default
    1e-6 in float64, 1e-4 in float32, scikit-learn's default)."""
    import torch

    X, y, w, class_mask = _prepare(X, y, w, class_mask, dtype)
    if tol is None:
        tol = 1e-6 if X.dtype == torch.float64 else 1e-4
    P, _, d = X.shape
    K = class_mask.shape[1]
    ymask = class_mask.gather(1, y.clamp(min=0))
    c = torch.where(class_mask.sum(1) == 2, C / 2, C).to(X.dtype)  # [P]
    wy = w * ymask  # a label outside the mask never counts
    scale = 1.0 / (c * wy.sum(1)).clamp(min=1e-12)
    target = y.clamp(min=0)

    kmask_all = class_mask[:, None, :].to(X.dtype)
    coef_all = (scale * c)[:, None] * wy  # [P, N] weight of each example's CE

    def objective(idx):
        full = len(idx) == P
        Xs, tgt, cm = (X, target, class_mask) if full else (X[idx], target[idx], class_mask[idx])
        coef, sc, kmask = (coef_all, scale, kmask_all) if full else (coef_all[idx], scale[idx], kmask_all[idx])
        n = len(idx)

        def value_and_grad(z, grad: bool = True):
            W = z[:, : d * K].view(n, d, K)
            b = z[:, d * K :]
            logits = (torch.einsum("pnd,pdk->pnk", Xs, W) + b[:, None, :]).masked_fill(~cm[:, None, :], NEG)
            logp = torch.log_softmax(logits, -1)
            ce = -logp.gather(-1, tgt[..., None])[..., 0]
            f = (coef * ce).sum(1) + sc * 0.5 * (W * W * kmask).sum((1, 2))
            if not grad:
                return f, None
            G = logp.exp()
            G.scatter_add_(-1, tgt[..., None], -torch.ones_like(G[..., :1]))  # softmax - onehot
            G *= coef[..., None]
            gW = torch.einsum("pnd,pnk->pdk", Xs, G) + sc[:, None, None] * W * kmask
            return f, torch.cat([gW.reshape(n, -1), G.sum(1)], 1)

        return value_and_grad

    z0 = torch.zeros(P, d * K + K, dtype=X.dtype, device=X.device)
    z, n_iter = batched_lbfgs(objective, z0, max_iter=max_iter, tol=tol, compact=compact)
    return LinearModels(z[:, : d * K].view(P, d, K), z[:, d * K :], class_mask, n_iter)


def fit_logistic_each(X, y, w=None, class_mask=None, C: float = 1.0, max_iter: int = 300, tol: float | None = None) -> LinearModels:
    """The same P problems and objective as :func:`fit_logistic_many`, solved one by one on
    the CPU with SciPy's L-BFGS-B (float64, only each problem's own rows and classes).

    On a CPU this is the faster way for the small problems probes are (the batched
    program pays torch's per-operation overhead on every iteration of its slowest
    problem); ``benchmarks/probes_batched_vs_sklearn.py`` measures both. ``tol`` bounds
    the max-norm of the gradient of the mean loss, as there (default 1e-6)."""
    import numpy as np
    import torch
    from scipy.optimize import minimize

    X, y, w, class_mask = _prepare(X, y, w, class_mask, torch.float64)
    tol = 1e-6 if tol is None else tol
    Xn, yn, wn, mn = (t.detach().cpu().numpy() for t in (X, y, w, class_mask))
    P, _, d = Xn.shape
    K = mn.shape[1]
    W_out = np.zeros((P, d, K))
    b_out = np.zeros((P, K))
    worst = 0
    for p in range(P):
        classes = np.flatnonzero(mn[p])
        rows = (wn[p] > 0) & mn[p][np.clip(yn[p], 0, K - 1)]
        x, sw = Xn[p][rows], wn[p][rows]
        k = len(classes)
        if k < 2 or not rows.any():
            continue
        onehot = (yn[p][rows][:, None] == classes[None, :]).astype(float)
        c = C / 2 if k == 2 else C
        total = sw.sum()
        sw = sw / total
        reg = 1.0 / (c * total)

        def value_and_grad(z, x=x, sw=sw, onehot=onehot, k=k, reg=reg):
            Wp, bp = z[: d * k].reshape(d, k), z[d * k :]
            logits = x @ Wp + bp
            logits -= logits.max(1, keepdims=True)
            logz = np.log(np.exp(logits).sum(1, keepdims=True))
            logp = logits - logz
            f = -(sw * (onehot * logp).sum(1)).sum() + 0.5 * reg * (Wp * Wp).sum()
            G = (np.exp(logp) - onehot) * sw[:, None]
            return f, np.concatenate([(x.T @ G + reg * Wp).ravel(), G.sum(0)])

        res = minimize(value_and_grad, np.zeros(d * k + k), jac=True, method="L-BFGS-B",
                       options={"maxiter": max_iter, "gtol": tol, "ftol": 64 * np.finfo(float).eps, "maxls": 50})
        W_out[p][:, classes] = res.x[: d * k].reshape(d, k)
        b_out[p][classes] = res.x[d * k :]
        worst = max(worst, int(res.nit))
    device = X.device
    return LinearModels(torch.as_tensor(W_out, device=device), torch.as_tensor(b_out, device=device), class_mask, worst)


def fit_ridge_many(X, y, w=None, class_mask=None, alpha: float = 1.0, dtype=None) -> LinearModels:
    """Fit P one-hot ridge classifiers at once (closed form)."""
    import torch

    X, y, w, class_mask = _prepare(X, y, w, class_mask, dtype)
    P, N, d = X.shape
    K = class_mask.shape[1]
    Y = torch.nn.functional.one_hot(y.clamp(min=0), K).to(X.dtype) * 2 - 1  # {-1, 1} targets, as RidgeClassifier
    total = w.sum(1, keepdim=True).clamp(min=1e-12)
    x_mean = (w[..., None] * X).sum(1) / total
    y_mean = (w[..., None] * Y).sum(1) / total
    Xc = (X - x_mean[:, None]) * w[..., None].sqrt()
    Yc = (Y - y_mean[:, None]) * w[..., None].sqrt()
    A = Xc.transpose(1, 2) @ Xc + alpha * torch.eye(d, dtype=X.dtype, device=X.device)
    W = torch.linalg.solve(A, Xc.transpose(1, 2) @ Yc)
    b = y_mean - torch.einsum("pd,pdk->pk", x_mean, W)
    return LinearModels(W, b, class_mask)

