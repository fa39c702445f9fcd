"""`sagekit` command line.

    sagekit list                          studies, generators, judges
    sagekit lab [--dir DIR] [--port N] [--no-browser]   JupyterLab on a working copy of the notebooks
    sagekit run STUDY [-p key=value ...] [--out DIR] [--timeout S] [--executor local|ray [--address auto]] [--check]
    sagekit toy train [--seed N] [--out DIR]
    sagekit toy eval [--json] [--per-label N]
    sagekit bench sweep [--json] [--device D] [--arch toy|sd15|sdxl|tiny-sdxl] [--dtype T] [--compile]
    sagekit bench search [--json] [--device D] [--arch A] [--steps N] [--dtype T]
    sagekit bench ray [--json] [--workers 1,2]   toy sweep: local executor vs Ray workers
    sagekit ad FOLDER [--clip NAME] [--json]   Alignment Difficulty of image/caption pairs
    sagekit poison FOLDER --concepts A:B,C:D --budget P --out DIR   a dirty-label poisoned copy of a folder
    sagekit export RUN --to DIR            a run's failure cases as a dataset (Parquet + images)
    sagekit verify DIR --model ID [--judge SPEC] [--json]   draw a failure dataset again and judge it

Bad input (unknown study, parameter, wrong type) prints a message and exits with 2,
writing nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXIT_USAGE = 2  # bad input: nothing was run or written
EXIT_FAILED = 1  # the study itself failed


def _json(obj) -> str:
    """One line of strict JSON (NaN as null)."""
    from .report import dumps

    return dumps(obj, indent=None)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 too; keep its message short
        self.print_usage(sys.stderr)
        print(f"sagekit: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _build_parser() -> argparse.ArgumentParser:
    from .studies.defaults import AD_CLIP

    p = _Parser(prog="sagekit", description="Find and measure how text-to-image diffusion models fail.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("list", help="list studies, generators and judges")

    run = sub.add_parser("run", help="execute a study notebook and render its HTML report")
    run.add_argument("study", help="study id (see `sagekit list`)")
    run.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                     help="override a notebook parameter (repeatable); values are Python literals")
    run.add_argument("--out", default="reports", help="output folder (default: reports)")
    run.add_argument("--timeout", type=int, default=0,
                     help="per-cell execution timeout in seconds; 0 (the default): none, as a real model's long cells "
                          "(a seed-shift sweep, implosion's fine-tunes) take hours")
    run.add_argument("--log-output", action="store_true", help="stream the notebook's output")
    run.add_argument("--executor", choices=("local", "ray"), default=None,
                     help="where the work runs: a sweep's batches, implosion's points, a SAGE study's searches; "
                          "default local (every study but toy-world)")
    run.add_argument("--address", default=None, help="with --executor ray: the cluster to join, e.g. auto")
    run.add_argument("--check", action="store_true",
                     help="check the parameters and print what would run (every value, 'auto' resolved, and the "
                          "images); run and write nothing")

    lab = sub.add_parser("lab", help="open JupyterLab on a working copy of the study notebooks")
    lab.add_argument("--dir", default=None,
                     help="the working copy's folder (default: lab/ beside notebooks/, which shares the results store "
                          "with `sagekit run`); notebooks already there are kept")
    lab.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default 0: any free one)")
    lab.add_argument("--no-browser", action="store_true", help="print the URL instead of opening a browser")

    toy = sub.add_parser("toy", help="the self-trained toy world")
    toy_sub = toy.add_subparsers(dest="toy_command", required=True, parser_class=_Parser)
    train = toy_sub.add_parser("train", help="retrain every toy model from a seed (2 CPU cores: 76 min measured, "
                               "sagekit/toy/weights/training.json)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default=None, help="weights folder (default: the package's toy/weights)")
    train.add_argument("--only", default="", metavar="MODEL",
                       help="retrain just this on the existing VAE and text encoder: caption-lm, toy, "
                            "toy-latent-learned or toy-pixel, or generators (the caption LM and the three UNets; the "
                            "judges, CLIP and VAE stay); training.json has each one's seconds")
    train.add_argument("--scale", type=float, default=1.0,
                       help="every data set size and step count times this (at least 2 steps; 1, the default, "
                            "reproduces the shipped weights; 0.01 trains a rough world in about a minute)")
    ev = toy_sub.add_parser("eval", help="measure judges and generators of the toy world")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--per-label", type=int, default=6, help="generated images per label (36 labels)")
    ev.add_argument("--n-judge", type=int, default=1000, help="held-out images for judge accuracy")
    ad = sub.add_parser("ad", help="Alignment Difficulty of a folder of image + caption (.txt) pairs")
    ad.add_argument("folder")
    ad.add_argument("--clip", default=AD_CLIP,
                    help="CLIP model (default: OpenAI's ViT-B/32, the one the implosion paper's compute_AD.py uses and "
                         "its rescale constants were calibrated for)")
    ad.add_argument("--device", default="cpu")
    ad.add_argument("--json", action="store_true")

    po = sub.add_parser("poison", help="a dirty-label poisoned copy of a folder of image + caption pairs")
    po.add_argument("folder", help="images with a .txt caption of the same name beside each")
    po.add_argument("--concepts", required=True, help="A:B[,C:D...]: captions about A paired with images of B")
    po.add_argument("--budget", type=int, required=True, help="poisoned pairs in all, split evenly over the concepts")
    po.add_argument("--out", required=True, help="new (or empty) folder for the poisoned set")
    po.add_argument("--seed", type=int, default=0, help="which images of B are poisoned")
    ex = sub.add_parser("export", help="write a run's failure cases as a dataset (Parquet table, images, "
                        "latents and token embeddings as safetensors, data card)")
    ex.add_argument("run", help="a run's summary (.json or .html, as `sagekit run` writes them) or a results-store folder")
    ex.add_argument("--to", required=True, help="new (or empty) dataset folder")
    ve = sub.add_parser("verify", help="draw every case of a failure dataset again and judge it")
    ve.add_argument("folder", help="a folder `sagekit export` wrote")
    ve.add_argument("--model", required=True, help="generator: toy name, local diffusers folder or cached hub id")
    ve.add_argument("--judge", default=None, help="judge spec instead of each case's own judges")
    ve.add_argument("--device", default="auto", help="auto (the default: cuda when there is one, as the studies "
                    "run on it), cpu or cuda[:N]")
    ve.add_argument("--json", action="store_true", help="print one JSON object")

    bench = sub.add_parser("bench", help="performance measurements")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, parser_class=_Parser)
    bs = bench_sub.add_parser("sweep", help="images/s: stock pipeline vs sagekit sweep vs UNet ceiling")
    bq = bench_sub.add_parser("search", help="seconds and peak memory per latent-search iteration")
    for b in (bs, bq):
        b.add_argument("--json", action="store_true", help="print one JSON object")
        b.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
        b.add_argument("--steps", type=int, default=None)
        b.add_argument("--arch", default=None, help="toy (CPU default), sd15 (CUDA default), sdxl or tiny-sdxl: "
                       "a random-weight pipeline of that architecture")
        b.add_argument("--dtype", default=None, help="float16, bfloat16 or float32 (default: float16 on CUDA)")
    bs.add_argument("--batch-size", type=int, default=None, help="images per batch; 0: chosen from free memory")
    bs.add_argument("--compile", action="store_true", help="also measure after torch.compile of the denoiser")
    bq.add_argument("--iterations", type=int, default=3, help="timed iterations per mode (the median is kept)")
    br = bench_sub.add_parser("ray", help="images/s of a toy sweep: local executor vs 1, 2, ... Ray workers")
    br.add_argument("--json", action="store_true", help="print one JSON object")
    br.add_argument("--workers", default="1,2", help="comma-separated worker counts (one torch thread each)")
    br.add_argument("--labels", type=int, default=8, help="toy labels in the sweep")
    br.add_argument("--seeds", type=int, default=6, help="seeds per label and shift")
    return p


def _cmd_bench(args) -> int:
    from .bench import ARCHS, bench_search, bench_sweep
    from .models.speed import DTYPES

    if args.bench_command == "ray":
        return _cmd_bench_ray(args)
    problems = []
    if args.device not in (None, "cpu", "cuda") and not str(args.device).startswith("cuda:"):
        problems.append(f"unknown device {args.device!r}")
    if args.steps is not None and args.steps < 1:
        problems.append("--steps must be positive")
    if getattr(args, "batch_size", None) is not None and args.batch_size < 0:
        problems.append("--batch-size must be positive (or 0: from free memory)")
    if getattr(args, "iterations", 1) < 1:
        problems.append("--iterations must be positive")
    if args.arch is not None and args.arch not in ARCHS:
        problems.append(f"unknown architecture {args.arch!r}; choose one of {', '.join(ARCHS)}")
    if args.dtype is not None and args.dtype not in DTYPES:
        problems.append(f"unknown dtype {args.dtype!r}; choose one of {', '.join(DTYPES)}")
    if problems:
        print(f"sagekit: error: {problems[0]}", file=sys.stderr)
        return EXIT_USAGE
    if args.bench_command == "sweep":
        res = bench_sweep(args.device, args.batch_size, args.steps, arch=args.arch, dtype=args.dtype,
                          compile=args.compile)
    else:
        res = bench_search(args.device, args.arch, args.steps, iterations=args.iterations, dtype=args.dtype)
    if args.json:
        print(_json(res))
    else:
        for k, v in res.items():
            print(f"{k:<24} {v}")
    return 0


def _cmd_ad(args) -> int:
    from .models.registry import ModelNotFoundError, UnknownModelError
    from .studies.alignment import folder_ad

    try:
        res = folder_ad(args.folder, args.clip, args.device)
    except (FileNotFoundError, ValueError, UnknownModelError, ModelNotFoundError) as e:
        print(f"sagekit: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    left_out = res.pop("left_out")
    from .studies.implosion import clip_note

    if clip_note(args.clip):
        print(f"sagekit: note: {clip_note(args.clip)}", file=sys.stderr)
    if res["uncaptioned"] or res["captions_without_image"]:
        print(f"sagekit: left out {res['uncaptioned']} image(s) without a caption and "
              f"{res['captions_without_image']} caption(s) without an image, e.g. {', '.join(left_out)}",
              file=sys.stderr)
    print(_json(res) if args.json else "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                      for k, v in res.items()))
    return 0


def _cmd_poison(args) -> int:
    from .poisoning import PoisonError, write_poisoned

    try:
        res = write_poisoned(args.folder, args.concepts, args.budget, args.out, args.seed)
    except PoisonError as e:
        print(f"sagekit: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{res['poisoned']} of {res['pairs']} pairs poisoned, written to {res['folder']} (manifest: poison.json)")
    return 0


def _cmd_export(args) -> int:
    from .dataset import DatasetError, export

    try:
        res = export(args.run, args.to)
    except DatasetError as e:
        print(f"sagekit: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{res['cases']} failure cases ({res['verified']} verified) written to {res['folder']}")
    return 0


def _cmd_verify(args) -> int:
    from .dataset import DatasetError, read, verify
    from .models.registry import ModelNotFoundError, UnknownModelError, UnsafeWeightsError

    try:
        read(args.folder)  # a bad folder fails before any model loads
        import torch

        device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
        res = verify(args.folder, args.model, args.judge, device, progress=not args.json)
    except (DatasetError, ModelNotFoundError, UnknownModelError, UnsafeWeightsError) as e:
        print(f"sagekit: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    n = len(res)
    still, confirmed = int(res["still_fails"].sum()), int(res["verifier_still"].sum())
    summary = {"cases": n, "still_fail": still, "verifier_still": confirmed,
               "same_revision": int(res["same_revision"].sum()), "rows": res.to_dict("records")}
    if args.json:
        print(_json(summary))
        return 0
    for r in res.itertuples():
        print(f"{'FAILS' if r.still_fails else 'ok   '} {r.now:.2f} (was {r.recorded:.2f})  "
              f"verifier {r.verifier_now:.2f} (was {r.verifier_recorded:.2f})  {r.study}: {r.prompt!r}")
    print(f"{still} of {n} cases still fail under their judges; the verifier confirms {confirmed} of {n}"
          + ("" if summary["same_revision"] == n else
             f"; {n - summary['same_revision']} were found on other weights than {args.model}'s"))
    return 0


def _cmd_list() -> int:
    from .models.families import FAMILIES
    from .models.registry import known_generators, known_judges
    from .studies import STUDIES

    print("studies:")
    for s in STUDIES.values():
        print(f"  {s.id:<20} {s.notebook:<28} {'' if s.ready else '(in progress) '}{s.question}")
    print("generators: " + ", ".join(known_generators()) + ", <local diffusers folder>, <hub id in the local cache>")
    print("judges:     " + ", ".join(known_judges()))
    print("families (the pipeline class in a folder's model_index.json):")
    for cls, (_, _, what) in FAMILIES.items():
        print(f"  {cls:<28} {what}")
    return 0


def _cmd_bench_ray(args) -> int:
    import importlib.util

    try:
        workers = tuple(int(w) for w in args.workers.split(","))
    except ValueError:
        workers = ()
    problem = None
    if not workers or min(workers) < 1:
        problem = f"--workers must be positive integers separated by commas, got {args.workers!r}"
    elif args.labels < 1 or args.seeds < 1:
        problem = "--labels and --seeds must be positive"
    elif importlib.util.find_spec("ray") is None:
        problem = "Ray is not installed: pip install 'sagekit[ray]'"
    if problem:
        print(f"sagekit: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    from .bench.scaling import bench_ray

    res = bench_ray(workers, n_labels=args.labels, seeds=args.seeds)
    print(_json(res) if args.json else "\n".join(f"{k:<24} {v}" for k, v in res.items()))
    return 0


def _cmd_run(args) -> int:
    from .report import ParameterError, StudyFailed, run_study
    from .studies import STUDIES

    params = list(args.param)
    if args.executor is not None or args.address is not None:
        takes = [s for s, study in STUDIES.items() if "executor" in study.schema.params]
        if args.study in STUDIES and args.study not in takes:
            print(f"sagekit: error: study {args.study!r} runs in this process only; --executor and --address apply "
                  f"to: {', '.join(takes)}", file=sys.stderr)
            return EXIT_USAGE
        if args.address is not None and args.executor != "ray":
            print("sagekit: error: --address needs --executor ray", file=sys.stderr)
            return EXIT_USAGE
        params += [f"executor={args.executor!r}"] + ([f"address={args.address!r}"] if args.address else [])
    try:
        if args.check:
            from .report import auto_resolved, check_study

            study, _, merged, resolved, images = check_study(args.study, params)
            print(_json({"study": study.id, "images": images, "parameters": resolved,
                         "auto": auto_resolved(merged, resolved)}))
            return 0
        summary = run_study(args.study, params, args.out, timeout=args.timeout, log_output=args.log_output,
                            announce=lambda line: print(f"sagekit: {line}", file=sys.stderr))
    except (KeyError, ParameterError) as e:
        print(f"sagekit: error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return EXIT_USAGE
    except StudyFailed as e:
        print(f"sagekit: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(os.path.join(args.out, summary["html"]))
    return 0


def _cmd_lab(args) -> int:
    import signal

    from .lab import DEFAULT_DIR, LabError, start

    # the server runs in its own session: a kill of sagekit must stop it too, as Ctrl-C does
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    # and Ctrl-C stops it even when started by a script's `&`, which leaves SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        lab = start(Path(args.dir) if args.dir else DEFAULT_DIR, args.port)
    except LabError as e:
        print(f"sagekit: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        print(lab.url, flush=True)
        print(f"sagekit: JupyterLab on {lab.folder} (log: {lab.log}); Ctrl-C stops it", file=sys.stderr, flush=True)
        if not args.no_browser:
            import webbrowser

            webbrowser.open(lab.url)
        return lab.process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        lab.stop()


def _cmd_toy(args) -> int:
    if args.toy_command == "train":
        from .toy.names import TOY_DIR
        from .studies.parameters import unwritable
        from .toy.training import ONLY_CHOICES, TrainConfig, train_only, train_toy_world

        out = Path(args.out or TOY_DIR)
        problem = unwritable(out)
        if not problem and not 0 <= args.seed < 2**32:
            problem = f"--seed must be from 0 to {2**32 - 1}, got {args.seed}"
        if not problem and args.only and args.only not in ONLY_CHOICES:
            problem = f"--only must be one of: {', '.join(ONLY_CHOICES)}; got {args.only!r}"
        if not problem and not 0 < args.scale <= 1:
            problem = f"--scale must be above 0 and at most 1, got {args.scale}"
        if not problem and args.scale != 1 and args.out is None:
            problem = "--scale trains a rougher world than the shipped one: give it its own --out folder"
        if not problem and args.only and not (out / "toy" / "vae").is_dir():
            problem = f"--only needs the trained toy VAE and text encoder in {out / 'toy'}; run `sagekit toy train` first"
        if problem:
            print(f"sagekit: error: {problem}", file=sys.stderr)
            return EXIT_USAGE
        if args.only:
            log = train_only(out, TrainConfig(seed=args.seed, only=args.only).scaled(args.scale))
            print(json.dumps({k: log[k] for k in ("seconds", "total_seconds")}, indent=1))
            return 0
        log = train_toy_world(out, TrainConfig(seed=args.seed).scaled(args.scale))
        print(json.dumps({k: log[k] for k in ("seconds", "total_seconds", "judges", "vae_recon_judge_acc")}, indent=1))
        return 0
    from .toy.evaluate import evaluate

    if args.per_label < 1 or args.n_judge < 1:
        print("sagekit: error: --per-label and --n-judge must be positive", file=sys.stderr)
        return EXIT_USAGE
    res = evaluate(per_label=args.per_label, n_judge=args.n_judge)
    if args.json:
        print(_json(res))
    else:
        print("judge accuracy:", ", ".join(f"{k} {v:.3f}" for k, v in res["judge_acc"].items()))
        print("judge calibration error:", ", ".join(f"{k} {v:.3f}" for k, v in res["judge_ece"].items()))
        for model, modes in res["gen_detail"].items():
            for mode, r in modes.items():
                print(f"{model:<10} {mode:<9} g={r['guidance']:<4} acc {r['acc']:.3f} "
                      f"(shape {r['shape_acc']:.3f}, colour {r['colour_acc']:.3f}, n={r['n']}; held-out pairs "
                      f"{r['held_out_acc']:.3f} of {r['n_held_out']}; {r['images_per_s']} img/s)")
        for bar, ok in res["bars_met"].items():
            print(f"  {'met' if ok else 'NOT met'}: {bar}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:  # Ctrl-C: one line, the shell's status for SIGINT; a run's temporary folder is gone
        print("sagekit: interrupted", file=sys.stderr)
        return 130


def _dispatch(args) -> int:
    if args.command == "list":
        return _cmd_list()
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "bench":
        return _cmd_bench(args)
    if args.command == "lab":
        return _cmd_lab(args)
    if args.command == "ad":
        return _cmd_ad(args)
    if args.command == "poison":
        return _cmd_poison(args)
    if args.command == "export":
        return _cmd_export(args)
    if args.command == "verify":
        return _cmd_verify(args)
    return _cmd_toy(args)


if __name__ == "__main__":
    sys.exit(main())
