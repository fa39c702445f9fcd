"""The Ray executor on a local Ray instance of 2 CPU workers: the same stored results as the
local executor; a worker killed mid-batch loses and duplicates nothing; a killed driver
resumes where it stopped."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import ray
import torch

from sagekit.executors import LocalExecutor, RayExecutor, get_executor
from sagekit.spread import Models, gather, spread
from sagekit.models import load_clip_scorer, load_generator, load_judge
from sagekit.store import ResultStore
from sagekit.studies import seed_shifts
from sagekit.sweep import grid, run_sweep

HERE = Path(__file__).parent
PATH = os.pathsep.join([str(HERE), str(HERE.parent)])  # workers import the code under test and the helpers


def test_the_seed_shift_study_runs_on_ray_workers_from_the_command_line(tmp_path, capfd):
    """`sagekit run seed-shifts --executor ray`: the notebook's kernel starts a local Ray
    instance (before this module's own) and its workers draw the sweep; the same cells as
    the local executor are stored."""
    from sagekit.cli import main

    small = ["models=['toy']", "guidance=[None]", "n_labels=2", "shifts={'UMS': [0.4]}", "baseline_seeds_per_cell=2",
             "trajectory_seeds=1"]
    frames = {}
    for executor in ("local", "ray"):
        store = tmp_path / f"store-{executor}"
        args = ["run", "seed-shifts", "--out", str(tmp_path / executor), "--executor", executor]
        for p in small + [f"store_dir={str(store)!r}"]:
            args += ["-p", p]
        assert main(args) == 0
        out, err = capfd.readouterr()
        html = Path(out.strip().splitlines()[-1]).read_text()
        assert "SIGTERM received" not in err  # the kernel, a Ray driver, stops without a stack trace
        assert ("batches run on <strong>ray (2 workers, 1 CPU each)</strong>" in html) == (executor == "ray")
        assert "Token authentication" not in html  # Ray's start-up notice stays out of the report
        frames[executor] = ResultStore(store).frame("seed-shifts").sort_values("key").reset_index(drop=True)
    assert len(frames["ray"]) == 6 and list(frames["ray"]["key"]) == list(frames["local"]["key"])
    assert main(["run", "toy-world", "--executor", "ray"]) == 2
    assert ("runs in this process only; --executor and --address apply to: prompt-failures, distorted-latents, "
            "unrelated-latents, adversarial-tokens, seed-shifts, implosion") in capfd.readouterr().err
    assert main(["run", "seed-shifts", "--address", "auto"]) == 2
    assert "--address needs --executor ray" in capfd.readouterr().err


def test_a_ray_address_nobody_answers_is_refused_before_the_kernel_starts(capfd, monkeypatch):
    import socket

    from sagekit import executors
    from sagekit.cli import main

    monkeypatch.setattr(executors, "RAY_CONNECT_SECONDS", 0.5)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # a port that is bound but not listening: refused at once
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    try:
        for address, message in ((f"127.0.0.1:{closed.getsockname()[1]}", "Connection refused"),
                                 ("192.0.2.1:6379", "no Ray head answers at 192.0.2.1:6379"),  # TEST-NET: no host
                                 ("10.0.0.1", "is not a Ray address")):
            assert main(["run", "seed-shifts", "--executor", "ray", "--address", address, "--check"]) == 2
            err = capfd.readouterr().err
            assert message in err and len(err.strip().splitlines()) == 1, err
        assert executors.unreachable_ray(f"ray://127.0.0.1:{listening.getsockname()[1]}") is None
        assert executors.unreachable_ray("auto") is None
    finally:
        closed.close()
        listening.close()


@pytest.mark.slow  # the searches on Ray are tested below without a notebook; this is the notebooks' path
def test_a_sage_study_runs_its_searches_on_ray_workers_from_the_command_line(tmp_path, capfd):
    """`sagekit run unrelated-latents --executor ray`: one search per label on the workers."""
    from sagekit.cli import main

    args = ["run", "unrelated-latents", "--out", str(tmp_path), "--executor", "ray", "-p", "n_labels=2",
            "-p", "iterations=2", "-p", "steps=4", "-p", "compare_iterations=1", "-p", "reference_images=4",
            "-p", f"store_dir={str(tmp_path / 'store')!r}", "-p", "per_task=1"]
    assert main(args) == 0
    out, err = capfd.readouterr()
    html = Path(out.strip().splitlines()[-1]).read_text()
    assert "Searches ran on <strong>ray (2 workers, 1 CPU each)</strong>" in html
    assert "SIGTERM received" not in err
    assert len(list((tmp_path / "store" / "checkpoints").glob("*.safetensors"))) == 2  # a search per label


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": PATH}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def test_a_seed_shift_sweep_stores_the_same_results_through_ray(cluster, tmp_path):
    gens = {"toy": load_generator("toy")}
    judge, clip = load_judge("toy-resnet"), load_clip_scorer("toy-clip")
    cells = seed_shifts.build_cells(["toy"], {"UMS": [0.4]}, ["red circle", "blue square"], [0, 1, 2], [3.0], 3,
                                    judge.name, clip.name)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker: the same arithmetic, bit for bit
    try:
        local = seed_shifts.run(cells, ResultStore(tmp_path / "local"), gens, judge, clip, batch_size=4, progress=False)
    finally:
        torch.set_num_threads(threads)
    executor = RayExecutor(workers=2, threads=1)
    remote = seed_shifts.run(cells, ResultStore(tmp_path / "ray"), gens, judge, clip, batch_size=4, progress=False,
                             executor=executor)
    pids = ray.get([a.pid.remote() for a in executor.actors])
    executor.shutdown()
    assert len(set(pids)) == 2 and os.getpid() not in pids  # two workers did the work, not this process
    cols = ["key", "top1", "top5", "p_target", "pred", "clip", "cx", "cy"]
    a = local[cols].sort_values("key").reset_index(drop=True)
    b = remote[cols].sort_values("key").reset_index(drop=True)
    assert len(a) == 12
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    for key in a["key"]:
        assert (ResultStore(tmp_path / "local").image(key) == ResultStore(tmp_path / "ray").image(key)).all()


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(cluster, tmp_path):
    marker = tmp_path / "died"
    cells = grid(model=["m"], guidance=[1.0], steps=[1], seed=range(12))
    store = ResultStore(tmp_path / "store")
    executor = RayExecutor(workers=2, threads=1)
    df = run_sweep("t", cells, store, "ray_helpers:dying", batch_size=2, progress=False, executor=executor,
                   settings={"marker": str(marker), "die_on_seed": 5})
    executor.shutdown()
    dead = int(marker.read_text())  # a worker did die, in the batch of seed 5
    frame = store.frame("t")
    assert len(frame) == 12 and frame["key"].is_unique and sorted(frame["seed"]) == list(range(12))
    assert (frame["double"] == 2 * frame["seed"]).all()
    assert int(frame.loc[frame["seed"] == 5, "pid"].iloc[0]) != dead  # retried on the restarted worker
    assert set(df["key"]) == set(frame["key"]) and frame["image"].notna().all()


def test_a_killed_driver_resumes_and_computes_only_what_is_missing(cluster, tmp_path):
    store, log = tmp_path / "store", tmp_path / "computed.txt"
    env = {**os.environ, "PYTHONPATH": PATH}
    proc = subprocess.Popen([sys.executable, str(HERE / "ray_driver.py"), cluster, str(store), str(log)], env=env)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if (store / "results.sqlite").exists() and 4 <= len(ResultStore(store)) < 12:
            break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = set(ResultStore(store).frame("t")["seed"])
    assert 4 <= len(stored) < 16 and not (store / "finished").exists()  # killed in the middle

    log.write_text("")
    cells = grid(model=["m"], guidance=[1.0], steps=[1], seed=range(16))
    executor = RayExecutor(workers=2, threads=1)
    df = run_sweep("t", cells, ResultStore(store), "ray_helpers:slow", batch_size=2, progress=False,
                   executor=executor, settings={"log": str(log)})
    executor.shutdown()
    recomputed = [int(x) for x in log.read_text().split()]
    assert sorted(recomputed) == sorted(set(range(16)) - stored)  # nothing stored was computed again
    assert len(df) == 16 and df["key"].is_unique and (df["double"] == 2 * df["seed"]).all()


def test_executors_by_name_and_a_closure_cannot_travel(cluster):
    assert isinstance(get_executor("local"), LocalExecutor)
    with pytest.raises(ValueError, match="unknown executor 'dask'"):
        get_executor("dask")
    executor = RayExecutor(workers=1)
    with pytest.raises(TypeError, match="needs a Processor"):
        list(executor.map(lambda cells: ([], None), [[{"seed": 0}]]))
    with pytest.raises(TypeError, match="needs its task named 'module:function'"):
        list(spread(lambda models, cells: ([], None), Models(), [[{"seed": 0}]], executor=executor))


def test_the_scaling_bench_measures_each_executor(cluster, capsys):
    from sagekit.cli import main

    assert main(["bench", "ray", "--workers", "1,2", "--labels", "2", "--seeds", "2", "--json"]) == 0
    res = __import__("json").loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["cells"] == 8 and res["cores"] == os.cpu_count()
    assert all(res[k] > 0 for k in ("local_1_thread", "ray_1_workers", "ray_2_workers"))
    # Each figure is the one its seconds give, within the rounding of both: rates and ratios are
    # printed to 0.01 and seconds to 0.001, so a rate may sit 0.005 + d(cells/s)/ds * 0.0005 away.
    sec, half = res["seconds"], 5e-4
    for k in ("local_1_thread", "ray_1_workers", "ray_2_workers"):  # images/s from the seconds it measured
        bound = 5e-3 + res["cells"] * half / (sec[k] - half) ** 2
        assert res[k] == pytest.approx(res["cells"] / sec[k], abs=bound)
    s1, s2 = sec["ray_1_workers"], sec["ray_2_workers"]
    bound = 5e-3 + half / (s2 - half) + (s1 + half) * half / (s2 - half) ** 2
    assert res["ray_2_over_1"] == pytest.approx(s1 / s2, abs=bound)
    assert main(["bench", "ray", "--workers", "0,2"]) == 2
    assert "--workers must be positive integers" in capsys.readouterr().err


def test_implosion_points_run_on_ray_workers_with_the_same_results(cluster):
    """Each point (a fine-tune and its evaluation) on a worker that loaded the models once:
    the same rows as in this process, in the order of ks."""
    from sagekit.studies import implosion as imp

    gen, judge, clip = load_generator("toy"), load_judge("toy-ensemble"), load_clip_scorer("toy-clip")
    kw = dict(ks=[0, 1], n_train=60, budget=8, steps=2, lr=5e-4, trainable="all", seeds=[0, 1], attention_seeds=1,
              batch_size=16, progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = imp.run_k(gen, judge, clip, **kw)
    finally:
        torch.set_num_threads(threads)
    executor = RayExecutor(workers=2, threads=1)
    remote = imp.run_k(gen, judge, clip, executor=executor, **kw)
    executor.shutdown()
    assert list(remote.table["k"]) == [0, 0, 1, 1] and list(remote.table["control"]) == [False, True, False, True]
    pd.testing.assert_frame_equal(local.table, remote.table, check_exact=True)
    assert list(remote.details) == [tuple(r) for r in remote.table[["rule", "k", "control"]].values.tolist()]
    key = ("total", 1, True)
    assert (remote.details[key]["images"] - local.details[key]["images"]).abs().max() <= 0.5 / 255  # uint8 on the way


def test_workers_built_for_another_task_are_replaced(cluster, tmp_path):
    cells = grid(model=["m"], guidance=[1.0], steps=[1], seed=range(4))
    executor = RayExecutor(workers=1, threads=1)
    for name in ("a", "b"):
        log = tmp_path / f"{name}.txt"
        run_sweep("t", cells, ResultStore(tmp_path / name), "ray_helpers:slow", batch_size=2, progress=False,
                  executor=executor, settings={"log": str(log), "seconds": 0.0})
        assert sorted(int(x) for x in log.read_text().split()) == [0, 1, 2, 3]  # this function drew them
    executor.shutdown()


@pytest.fixture(scope="module")
def searchers():
    from sagekit.models import load_ensemble
    from sagekit.models.registry import load_caption_lm

    lm, tok = load_caption_lm("toy")
    return {"gen": load_generator("toy"), "judges": load_ensemble("toy-ensemble"),
            "verifier": load_ensemble("toy-clip"), "clip": load_clip_scorer("toy-clip"), "lm": lm, "tok": tok}


def _one_thread(fn):
    """``fn()`` with one torch thread, as each Ray worker computes: the same arithmetic, bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(threads)


def _both(search):
    """``search(executor)`` with the local executor (one thread) and on 2 Ray workers; the
    Ray workers' pids, which must be neither this process nor one another."""
    local = _one_thread(lambda: search(LocalExecutor()))
    executor = RayExecutor(workers=2, threads=1)
    remote = search(executor)
    pids = ray.get([a.pid.remote() for a in executor.actors])
    executor.shutdown()
    assert len(set(pids)) == 2 and os.getpid() not in pids
    return local, remote


def test_prompt_searches_run_one_label_per_ray_worker_with_the_same_results(cluster, searchers, tmp_path):
    from sagekit.search import RobustGoal
    from sagekit.studies import prompt_failures as ps

    s = searchers
    cfg = ps.PromptSearchConfig(iterations=2, max_words=1, top_k=3, rescore=2, eval_seeds=2, steps=4, search_steps=2,
                                train_seeds=1)
    labels = ["red circle", "blue square", "green triangle"]
    local, remote = _both(lambda ex: ps.search(s["gen"], RobustGoal(s["judges"]), s["lm"], s["tok"], labels, cfg,
                                               verifier=s["verifier"], checkpoints=str(tmp_path / ex.name),
                                               executor=ex, per_task=1, progress=False))
    assert remote.table["label"].tolist() == labels  # in the labels' order, whichever worker finished first
    assert local.table["words"].str.len().gt(0).all()
    pd.testing.assert_frame_equal(local.table, remote.table, check_exact=True)
    assert torch.equal(local.images, remote.images)
    assert len(list((tmp_path / "ray" / "checkpoints").glob("*.safetensors"))) == 3  # one search per label


@pytest.mark.parametrize("study", ["unrelated", "distorted"])
def test_latent_searches_run_on_ray_workers_with_the_same_results(cluster, searchers, study):
    from sagekit.search import DistortedGoal, UnrelatedGoal
    from sagekit.studies import distorted_latents, latent_search, unrelated_latents

    s = searchers
    cfg = latent_search.LatentSearchConfig(iterations=2, steps=4)
    # Goals no image can meet, so that every search runs its 2 iterations whatever the toy
    # weights draw (a search stops at the first image that meets its goal).
    if study == "unrelated":
        goal, module, seeds = UnrelatedGoal(s["judges"], confidence=1.01), unrelated_latents, [0]
        labels = ["red circle", "blue square", "green triangle"]
    else:
        goal, module, seeds = DistortedGoal(s["judges"], low_confidence=0.0), distorted_latents, [0, 1, 2]
        labels = ["red circle", "blue square"]
    local, remote = _both(lambda ex: module.search(s["gen"], goal, labels, seeds, cfg, verifier=s["verifier"],
                                                   executor=ex, per_task=1, progress=False))
    assert len(remote.table) == 3 and len(remote.seconds_per_iteration) == 3 * 2  # 3 searches of 2 iterations
    pd.testing.assert_frame_equal(local.table, remote.table, check_exact=True)
    for name in ("z0", "z", "images_before", "images_after"):
        assert torch.equal(getattr(local, name), getattr(remote, name)), name
    if study == "unrelated":
        assert list(remote.table["label"]) == labels and remote.table["seed"].tolist() == [0, 0, 0]
    else:
        assert remote.table["seed"].tolist() == seeds and remote.images_after.shape[:2] == (3, 2)
        assert torch.equal(local.verified_each, remote.verified_each)


def test_adversarial_tokens_are_learned_one_target_per_ray_worker(cluster, searchers):
    from sagekit.search import TargetGoal
    from sagekit.studies import adversarial_tokens as at

    s = searchers
    targets = ["green square", "red circle"]
    splits = at.split_all(list(s["judges"].labels), targets, 3, 2)
    cfg = at.TokenConfig(iterations=2, batch=2, steps=4, search_steps=2)
    local, remote = _both(lambda ex: at.learn_tokens(s["gen"], TargetGoal(s["judges"]), s["clip"], splits, cfg, [5, 6],
                                                     verifier=s["verifier"], executor=ex, progress=False))
    assert remote.targets == targets and remote.table["target"].unique().tolist() == targets
    pd.testing.assert_frame_equal(local.table, remote.table, check_exact=True)
    assert torch.equal(local.token, remote.token) and torch.equal(local.plain, remote.plain)
    for t in targets:
        assert torch.equal(local.embeddings[t], remote.embeddings[t])


def test_a_search_whose_worker_is_killed_resumes_from_its_checkpoint(cluster, searchers, tmp_path):
    """The worker dies (SIGKILL) after 2 of 5 iterations; Ray restarts it and retries the
    task, whose search resumes from its checkpoint: the same latent and table as a search
    that was never interrupted."""
    from sagekit.search import UnrelatedGoal
    from sagekit.studies import latent_search, unrelated_latents

    s = searchers
    goal = UnrelatedGoal(s["judges"], confidence=1.01)  # never met: the search must still be running at 2
    cfg = latent_search.LatentSearchConfig(iterations=5, steps=4)
    pairs = [("red circle", 0)]
    settings = {"cfg": cfg, "prompt": unrelated_latents.PROMPT}
    whole = _one_thread(lambda: unrelated_latents.search(s["gen"], goal, ["red circle"], [0], cfg, progress=False))
    marker = tmp_path / "died"
    executor = RayExecutor(workers=1, threads=1)
    (resumed,) = gather("ray_helpers:dying_search", Models({"toy": s["gen"]}, goal=goal), pairs,
                        {**settings, "checkpoints": str(tmp_path), "marker": str(marker), "after": 2}, executor)
    executor.shutdown()
    died, again = marker.read_text().splitlines()
    assert died.startswith("died ") and again.startswith("resumed ")
    _, pid, iteration = again.split()
    assert pid != died.split()[1] and 2 <= int(iteration) < 5  # a new worker, resuming mid-search
    assert torch.equal(whole.z, resumed.z)
    cols = ["label", "seed", "found", "iterations", "p_target_after", "pred_after", "norm_sq", "delta_linf"]
    pd.testing.assert_frame_equal(whole.table[cols], resumed.table[cols], check_exact=True)
