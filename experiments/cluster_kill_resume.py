"""Kill a worker mid-training, restart it, resume: the log behind results/placement/cluster_kill_resume.log.

Command (any machine; two worker processes on 127.0.0.1):

    python experiments/cluster_kill_resume.py --data DIR

Starts two `alexnet-split worker` processes, runs `alexnet-split train --cluster` (recipe quick,
4 epochs, towers on tasks 0 and 1), SIGKILLs worker 1 after the first checkpoint, records how the
chief stopped and what it left, restarts worker 1 on the same port, reruns the same train
command, and checks that epochs 1..4 each appear once in history.csv. About 2 minutes on 2 cores.
tests/test_cluster.py asserts the same on synthetic data.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alexnet_split.loopback import LocalCluster  # noqa: E402
from alexnet_split.runlog import atomic_write  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="Flowers 17 folder; default $FLOWERS17_DIR or a download")
    p.add_argument("--log", default="results/placement/cluster_kill_resume.log")
    args = p.parse_args()
    lines = []

    def log(text):
        stamp = time.strftime("%H:%M:%S")
        for line in str(text).rstrip().splitlines():
            lines.append(f"[{stamp}] {line}")
            print(lines[-1], flush=True)

    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    with tempfile.TemporaryDirectory(prefix="alexnet_split_kill_") as tmp, LocalCluster(2, tmp) as cluster:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "alexnet_split.cli", "train", "--cluster", str(cluster.spec_file), "--out",
               str(out), "--recipe", "quick", "--set", "epochs=4"] + (["--data", args.data] if args.data else [])
        log(f"workers: {', '.join(f'task {k} {a}' for k, a in enumerate(cluster.addresses))}")
        log("$ alexnet-split train --cluster cluster.json --recipe quick --set epochs=4 --out run")
        chief = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        while not (out / "state.json").is_file() and chief.poll() is None:
            time.sleep(0.2)
        cluster.kill(1)
        killed = time.monotonic()
        log("SIGKILL worker task 1 after the first checkpoint")
        stdout, stderr = chief.communicate(timeout=120)
        log(f"chief exited with status {chief.returncode} {time.monotonic() - killed:.1f} s after the kill; "
            "its error:")
        log(stderr.strip().splitlines()[0] if "error:" not in stderr else
            next(line for line in stderr.splitlines() if "error:" in line))
        state = json.loads((out / "state.json").read_text())
        log(f"state.json: epoch {state['interval']}, checkpoint {state['checkpoint']} "
            f"({(out / state['checkpoint']).stat().st_size / 1e6:.1f} MB)")
        cluster.start(1, append=True)
        log("worker task 1 restarted on the same port; rerunning the same command")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        log(f"chief exited with status {proc.returncode}")
        log("\n".join(line for line in proc.stderr.splitlines() if line.startswith("resuming")))
        log(proc.stdout.strip().splitlines()[-1])
        with open(out / "history.csv") as f:
            epochs = [int(float(r["epoch"])) for r in csv.DictReader(f)]
        log(f"history.csv epochs: {epochs} ({'each once, none lost' if epochs == [1, 2, 3, 4] else 'WRONG'})")
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(Path(args.log), "\n".join(lines) + "\n")
    return 0 if epochs == [1, 2, 3, 4] and proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
