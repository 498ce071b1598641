"""The paper's per-worker training loop (PyTorch) against the jax_ec election step, same batch.

    python -m benchmarks.paper_loop [--models mlp[,resnet18]] [--n 15] [--r 2] [--batch 240]
                                    [--repeats R] [--torch-device cpu|cuda] [--quick] [--out PATH]

Optional: needs ``torch`` (CPU build is enough); without it the script says so and exits 0
writing nothing. ``--torch-device cuda`` runs the torch side on the GPU (each timed torch call
ends with ``torch.cuda.synchronize()``, as each jax call ends with ``block_until_ready``).

The paper's loop (as its official script runs it), one training step: for each worker i, for each
partition j that i holds (``G[i, j] = 1``): forward and backward on partition j's samples, sign of
that gradient; worker i's local vote = sign of the sum of those signs; a Byzantine worker replaces
its vote by the attack's message (reverse: the negated vote, directional: the constant direction);
the master's vote = sign of the sum of the n messages, applied by ``torch.optim.SGD`` with the
config's step size, momentum and weight decay (the update jax_ec's master makes). Every partition
gradient is recomputed for every worker holding it: about r·k forward/backward passes per step.

Both sides use the same model architecture (``mlp``: the digits MLP 64-128-10; ``resnet18``: a
CIFAR ResNet-18 written here in torch, the same as ``jax_ec.models.resnet``), the same global
minibatch (the rows of the jax trainer's first step, normalised as the task does; the torch loop
skips augmentation), the same allocation G and Byzantine set (the jax trial's), the same attack.
jax side: the election step of ``make_train``'s trainer, S steps per call (``trainer.run`` under
jit, or ``jax.jit(trainer.step)`` S times for resnet18 on CPU: see step_ratio's ``--timing``),
per-step time = call time / S, plus the plain one-gradient step; torch side: one step per call, plus
a plain one-gradient torch step. One warm-up call each, then the jax pair interleaved round by
round, then the torch pair (the two runtimes are not interleaved: their spinning worker threads
slow each other down).
Reported: ms per step of each and the speedup of the jax_ec election step over the paper loop.
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks import _timing as T

DEFAULTS = {"mlp": (20, 7), "resnet18": (1, 2)}      # (jax steps per call, repeats)
# torch intra-op threads per model (None: torch's default, one per core). The MLP's ops are tiny:
# a second OpenMP thread only adds barrier waits (40x slower when another process holds a core).
TORCH_THREADS = {"mlp": 1, "resnet18": None}
QUICK = {"mlp": (5, 2), "resnet18": (1, 1)}


def torch_models():
    """The torch MLP and CIFAR ResNet-18 (kuangliu/pytorch-cifar layout, as jax_ec.models.resnet)."""
    import torch.nn.functional as F
    from torch import nn

    class MLP(nn.Module):
        def __init__(self, inputs, hidden, classes):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(inputs, hidden), nn.Linear(hidden, classes)

        def forward(self, x):
            return self.fc2(F.relu(self.fc1(x.flatten(1))))

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = F.relu(self.bn1(self.conv1(x)))
            return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))

    class ResNet18(nn.Module):
        def __init__(self, classes=10, width=64):
            super().__init__()
            self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            blocks, cin = [], width
            for stage in range(4):
                cout = width * 2 ** stage
                for b in range(2):
                    blocks.append(BasicBlock(cin, cout, 2 if stage > 0 and b == 0 else 1))
                    cin = cout
            self.layers = nn.Sequential(*blocks)
            self.linear = nn.Linear(cin, classes)

        def forward(self, x):
            y = self.layers(F.relu(self.bn1(self.conv1(x))))
            return self.linear(y.mean(dim=(2, 3)))

    return MLP, ResNet18


def paper_step(torch, model, opt, parts, G: np.ndarray, byzantine: np.ndarray, attack: str, direction: int):
    """One step of the paper's loop (see the module docstring)."""
    import torch.nn.functional as F
    params = [p for p in model.parameters()]
    with torch.no_grad():
        master = [torch.zeros_like(p) for p in params]
    for i in range(G.shape[0]):
        local = [torch.zeros_like(p) for p in params]
        for j in np.flatnonzero(G[i]):
            model.zero_grad(set_to_none=False)
            x, y = parts[j]
            F.cross_entropy(model(x), y).backward()
            with torch.no_grad():
                for acc, p in zip(local, params):
                    acc.add_(torch.sign(p.grad))
        with torch.no_grad():
            for m, acc in zip(master, local):
                vote = torch.sign(acc)
                if byzantine[i] and attack == "reverse":
                    vote = -vote
                elif byzantine[i] and attack == "directional":
                    vote = torch.full_like(vote, float(direction))
                elif byzantine[i] and attack != "none":
                    raise ValueError(f"paper_loop: attack {attack!r} not written here (none, reverse, directional)")
                m.add_(vote)
    with torch.no_grad():
        for p, m in zip(params, master):
            p.grad = torch.sign(m)
    opt.step()


def plain_torch_step(torch, model, opt, x, y):
    import torch.nn.functional as F
    opt.zero_grad(set_to_none=False)
    F.cross_entropy(model(x), y).backward()
    opt.step()


def measure_model(torch, model_name: str, args, default_threads: int, log=print) -> dict:
    import jax
    import jax.numpy as jnp

    from jax_ec.data.images import normalize
    steps, repeats = (QUICK if args.quick else DEFAULTS)[model_name]
    steps, repeats = args.steps or steps, args.repeats or repeats
    cfg, task = T.build_from_args(model_name, args)
    trainer = T.trainer_of(cfg, task)
    data = T.device_data(task)
    key = T.trial_key(args.seed)
    state = jax.jit(trainer.train.init)(key, trainer.params)
    G = np.asarray(state.G).astype(np.int64)
    byz = np.asarray(state.byzantine)
    rows = np.asarray(trainer.batch_rows(state.keys.data, jnp.int32(0)))          # (k, B/k)

    # The same minibatch for torch, normalised as the task does (NCHW for the ResNet).
    if model_name == "mlp":
        from jax_ec.data.images import load_digits
        stats = load_digits()
    else:
        stats = T.random_cifar(8)
    x = np.array(normalize(jnp.asarray(task.train_x[rows.reshape(-1)]), stats.mean, stats.std), np.float32)
    y = np.asarray(task.train_y[rows.reshape(-1)], np.int64)
    MLP, ResNet18 = torch_models()
    if model_name == "mlp":
        x = x.reshape(x.shape[0], -1)
        make = lambda: MLP(x.shape[1], cfg.task.width or 128, int(task.train_y.max()) + 1)
    else:
        x = x.transpose(0, 3, 1, 2).copy()
        make = lambda: ResNet18(10, cfg.task.width or 64)
    device = torch.device(args.torch_device)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    m = rows.shape[1]
    parts = [(xt[j * m:(j + 1) * m], yt[j * m:(j + 1) * m]) for j in range(G.shape[1])]

    def sgd(model):
        o = cfg.optim
        return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)

    threads = args.torch_threads or TORCH_THREADS[model_name] or default_threads
    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)
    paper_model, plain_model = make().to(device), make().to(device)
    paper_model.train()
    plain_model.train()
    paper_opt, plain_opt = sgd(paper_model), sgd(plain_model)
    n_params = sum(p.numel() for p in paper_model.parameters())
    if n_params != trainer.num_params:
        raise RuntimeError(f"torch {model_name} has {n_params} parameters, jax_ec's {trainer.num_params}")

    mode = T.timing_mode(model_name, args.timing)
    plain_init, plain = T.plain_fns(trainer)
    jax_calls = {
        "jax_plain": T.step_call(plain, jax.jit(plain_init)(key), data, steps, mode),
        "jax_election": T.shared_step_call(trainer, state, data, steps, mode, {}),
    }

    def synced(fn):
        """``fn`` then, on a GPU, a wait for its kernels (torch launches them asynchronously)."""
        if device.type != "cuda":
            return fn
        return lambda: (fn(), torch.cuda.synchronize(device))[0]

    torch_calls = {
        "torch_plain": synced(lambda: plain_torch_step(torch, plain_model, plain_opt, xt, yt)),
        "torch_paper_loop": synced(lambda: paper_step(torch, paper_model, paper_opt, parts, G, byz, cfg.attack,
                                                      cfg.direction)),
    }
    log(f"{model_name}: d = {trainer.num_params:,}, r = {args.r:g} (realised {G.sum() / args.n:.2f}, "
        f"{int(G.sum())} partition passes per paper step), b = {cfg.b} {cfg.attack}; jax {steps} step(s) per "
        f"call, {repeats} repeats; torch {threads} thread(s)")
    # jax and torch are timed in two groups, not interleaved: the two runtimes' worker threads
    # spin after their work and slow each other down when their calls alternate.
    timings = T.time_many(jax_calls, repeats, units=steps, budget_s=args.budget_s, log=log)
    timings.update(T.time_many(torch_calls, repeats, units=1, budget_s=args.budget_s, log=log))
    ms = {name: t.median_ms_per_unit for name, t in timings.items()}
    return {**T.config_record(cfg, trainer), "jax_steps_per_call": steps, "torch_threads": threads,
            "torch_device": str(device),
            "jax_timing_mode": mode, "jax_election_step": T.describe_mode(mode, steps),
            "G": G.tolist(), "byzantine": np.flatnonzero(byz).tolist(), "realised_redundancy": G.sum() / args.n,
            "partition_passes_per_paper_step": int(G.sum()),
            "measurements": {name: t.to_dict() for name, t in timings.items()}, "ms_per_step": ms,
            "speedup_jax_election_over_paper_loop": T.ratio(timings["torch_paper_loop"], timings["jax_election"]),
            "paper_loop_over_torch_plain": T.ratio(timings["torch_paper_loop"], timings["torch_plain"]),
            "jax_election_over_jax_plain": T.ratio(timings["jax_election"], timings["jax_plain"]),
            "torch_plain_over_jax_plain": T.ratio(timings["torch_plain"], timings["jax_plain"])}


def main(argv=None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=T.models_arg, default=None, help="mlp and/or resnet18 (default mlp)")
    parser.add_argument("--steps", type=int, default=None, help="jax steps per timed call")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--budget-s", type=float, default=None)
    T.model_args(parser, mlp_width=False)
    parser.add_argument("--timing", choices=T.TIMING_MODES, default="auto",
                        help="jax side: run (lax.scan) or step (jit(step) per step); auto: step for resnet18 on CPU")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch intra-op threads (default: 1 for mlp, one per core for resnet18)")
    parser.add_argument("--torch-device", choices=("cpu", "cuda"), default="cpu",
                        help="where the torch side runs (default cpu; cuda needs a CUDA build of torch)")
    T.common_args(parser)
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError as exc:
        print(f"paper_loop: PyTorch is not installed ({exc}); this optional benchmark needs it "
              "(e.g. pip install torch, the CPU build is enough). Nothing was measured or written.")
        return None
    args.models = args.models or ["mlp"]
    unsupported = [m for m in args.models if m not in DEFAULTS]
    if unsupported:
        parser.error(f"--models: paper_loop has torch versions of {', '.join(DEFAULTS)} only, not {unsupported}")
    env = T.environment()
    if args.torch_device == "cuda" and not torch.cuda.is_available():
        parser.error(f"--torch-device: got 'cuda'; torch {torch.__version__} sees no CUDA device")
    env["torch_version"] = torch.__version__
    env["torch_default_threads"] = torch.get_num_threads()
    results = {m: measure_model(torch, m, args, env["torch_default_threads"]) for m in args.models}
    rows = [{"model": m, **res["ms_per_step"], "speedup": res["speedup_jax_election_over_paper_loop"]["median"],
             "speedup_min": res["speedup_jax_election_over_paper_loop"]["min"],
             "passes": res["partition_passes_per_paper_step"], "threads": res["torch_threads"]}
            for m, res in results.items()]
    print(T.table(rows, [("model", "model", ""), ("passes", "paper passes/step", ""),
                         ("torch_paper_loop", "paper loop ms", ".2f"), ("jax_election", "jax_ec election ms", ".3f"),
                         ("speedup", "speedup (med)", ".1f"), ("speedup_min", "speedup (min)", ".1f"),
                         ("torch_plain", "torch plain ms", ".3f"), ("jax_plain", "jax plain ms", ".3f"),
                         ("threads", "torch threads", "")]))
    T.write_result(T.out_path(args, "paper_loop"), "paper_loop", env, args, {"models": results})
    return results


if __name__ == "__main__":
    main()
