"""The recipes of scripts/deploy, tried as far as this machine allows (no Slurm, no cluster,
no systemd as PID 1): the Slurm array script run by bash as Slurm would run two elements
against a real broker (each takes one task, exits 0; each task runs once); fz-slurm-scale
with a stand-in sbatch (the array it asks for is the queue's depth, capped); the Kubernetes
manifests parsed (and rendered by kubectl kustomize where kubectl is installed); the systemd
units checked by systemd-analyze verify where it exists."""
import os
import shutil
import stat
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402

DEPLOY = os.path.join(h.SRC, "scripts", "deploy")


def slurm_array(f):
    ids = [f.submit("slurm %d" % i) for i in range(2)]
    env = dict(f.env, FZ_BIN=h.BIN, FZ_DRY_RUN="1", FZ_IDLE_EXIT="5", TMPDIR=f.dir,
               SLURM_JOB_ID="77", SLURM_ARRAY_JOB_ID="77")
    elements = []
    for i in (1, 2):
        elements.append(f._spawn("slurm-%d" % i, ["bash", os.path.join(DEPLOY, "slurm", "fz-worker.sbatch")],
                                 env=dict(env, SLURM_ARRAY_TASK_ID=str(i))))
    for p in elements:
        try:
            rc = p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise h.TestFailure("an array element did not exit")
        f.procs.pop(p.pid, None)
        h.check(rc == 0, "an array element exited %d" % rc)
    for i in ids:
        t = f.task(i)
        h.check(t["task"]["state"] == "succeeded" and len(t["attempts"]) == 1,
                "task %d: %s after %d attempts" % (i, t["task"]["state"], len(t["attempts"])))
    workers = sorted(f.task(i)["task"]["worker"] for i in ids)
    h.check(workers == ["slurm-77-1", "slurm-77-2"], "workers: %s" % workers)
    print("slurm: 2 array elements, 2 tasks, each once, both exit 0")


def slurm_scale(f):
    stub = os.path.join(f.dir, "stub")
    os.makedirs(stub)
    record = os.path.join(f.dir, "sbatch.args")
    with open(os.path.join(stub, "sbatch"), "w") as out:
        out.write('#!/bin/sh\necho "$@ FZ_MODELS=$FZ_MODELS" > %s\n' % record)
    os.chmod(os.path.join(stub, "sbatch"), 0o755)
    for i in range(5):
        f.submit("scale %d" % i, model="m1")
    f.submit("any model")
    env = dict(f.env, FZ_BIN=h.BIN, PATH=stub + ":" + os.environ["PATH"])
    scale = os.path.join(DEPLOY, "slurm", "fz-slurm-scale")

    def run(*args):
        if os.path.exists(record):
            os.unlink(record)
        r = subprocess.run([scale] + list(args), env=env, capture_output=True, text=True, timeout=30)
        h.check(r.returncode == 0, "fz-slurm-scale %s: exit %d %s" % (args, r.returncode, r.stderr))
        return open(record).read().split() if os.path.exists(record) else None

    got = run("--model", "m1", "--", "--partition=p")
    h.check(got and "1-6" in got and "--partition=p" in got and "FZ_MODELS=m1" in got,
            "model m1 (5 + 1 of any model): %s" % got)
    got = run("--max", "3")
    h.check(got and "1-3" in got, "capped at 3: %s" % got)
    got = run("--model", "other")
    h.check(got and "1-1" in got, "a model with only the any-model task: %s" % got)
    for t in f.ok("list", state="queued")["tasks"]:
        f.ok("cancel", task=t["id"])
    h.check(run("--model", "m1") is None, "an empty queue still submitted")
    r = subprocess.run([scale, "--max", "x"], env=env, capture_output=True, text=True, timeout=30)
    h.check(r.returncode == 2, "bad --max: exit %d" % r.returncode)
    print("fz-slurm-scale: asks for the queue's depth (6, capped 3, 1), nothing when empty")


def kubernetes():
    import yaml
    kdir = os.path.join(DEPLOY, "kubernetes")
    dep = yaml.safe_load(open(os.path.join(kdir, "fz-worker-deployment.yaml")))
    job = yaml.safe_load(open(os.path.join(kdir, "fz-worker-job.yaml")))
    h.check(dep["kind"] == "Deployment" and job["kind"] == "Job", "kinds")
    for doc in (dep, job):
        pod = doc["spec"]["template"]["spec"]
        c = pod["containers"][0]
        secrets = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
        h.check(secrets == ["fz-worker-keys"], "key Secret: %s" % secrets)
        env = {e["name"]: e.get("value") for e in c["env"]}
        h.check(env["FZ_BROKER_KEY"].startswith("/etc/fz/keys/"), "FZ_BROKER_KEY %s" % env)
        h.check(any(a.startswith("--pass-env=") for a in c["args"]), "no --pass-env: %s" % c["args"])
    h.check("--once" in job["spec"]["template"]["spec"]["containers"][0]["args"], "the Job's workers not --once")
    if shutil.which("kubectl"):
        r = subprocess.run(["kubectl", "kustomize", kdir], capture_output=True, text=True, timeout=60)
        h.check(r.returncode == 0 and "kind: Deployment" in r.stdout, "kubectl kustomize: %s" % r.stderr)
        print("kubernetes: manifests parse; kubectl kustomize renders the Deployment")
    else:
        print("kubernetes: manifests parse (kubectl not installed: not rendered)")


def systemd(f):
    if not shutil.which("systemd-analyze"):
        print("systemd: systemd-analyze not installed: units not verified")
        return
    for unit in ("fz-broker.service", "fz-worker@.service"):
        text = open(os.path.join(h.SRC, "scripts", "systemd", unit)).read()
        text = text.replace("/usr/local/bin/", h.BIN + "/").replace("User=fz", "User=root")
        path = os.path.join(f.dir, unit.replace("@.", "@1."))
        with open(path, "w") as out:
            out.write(text)
        r = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True, timeout=60)
        errors = [line for line in r.stderr.splitlines() if path in line or unit in line]
        h.check(not errors, "systemd-analyze verify %s: %s" % (unit, errors))
    print("systemd: both units pass systemd-analyze verify")


def body(f):
    f.start_broker()
    slurm_array(f)
    slurm_scale(f)
    kubernetes()
    systemd(f)


h.run("deploy_recipes", body)
