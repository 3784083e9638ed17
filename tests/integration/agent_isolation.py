"""What an agent starts with (issue 12, agent isolation): an agent that prints what it has
(its environment, its open descriptors, its blocked and ignored signals, its folder), run
by a worker whose own environment holds secrets, which has a descriptor open without
close-on-exec, SIGHUP ignored and SIGUSR2 blocked. The agent must get the basics, its FZ_
variables and what --pass-env names, and nothing else: descriptors 0-2 only, no signal
blocked or ignored, in its own work folder."""
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402

# The agent is the shell the worker starts; the probe is its child and reads the shell's
# state from /proc (its environment as exec'd, descriptors, signal masks, folder), so that
# nothing the probe itself opens or changes (Python ignores SIGPIPE) is counted. "; exit"
# keeps the shell from exec'ing the probe in its place.
PROBE = r"""import os
shell = os.getppid()
out = os.environ["FZ_WORKDIR"]
with open("/proc/%d/environ" % shell, "rb") as f:
    env = f.read().split(b"\0")
with open(os.path.join(out, "env.txt"), "wb") as f:
    f.write(b"\n".join(env))
with open(os.path.join(out, "fds.txt"), "w") as f:
    f.write(" ".join(os.listdir("/proc/%d/fd" % shell)))
with open("/proc/%d/status" % shell) as st, open(os.path.join(out, "sig.txt"), "w") as f:
    f.write("".join(line for line in st if line.startswith(("SigBlk:", "SigIgn:"))))
with open(os.path.join(out, "pwd.txt"), "w") as f:
    f.write(os.readlink("/proc/%d/cwd" % shell))
"""

BASICS = {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR"}


def body(f):
    probe = os.path.join(f.dir, "probe.py")
    with open(probe, "w") as out:
        out.write(PROBE)
    leaked = open(os.path.join(f.dir, "leaked.txt"), "w")
    os.set_inheritable(leaked.fileno(), True)
    env = dict(f.env, SECRET_TOKEN="hunter2", FZ_PRIVATE_NOTE="/keys/w.secret",
               ANTHROPIC_API_KEY="sk-not-passed", MY_KEY="passed-1", MYPFX_A="passed-2")

    def hostile_start():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])

    f.start_broker()
    work = os.path.join(f.dir, "work", "iso")
    f._spawn("worker-iso", [os.path.join(h.BIN, "fz-worker"), "--name", "iso", "--workdir", work,
                            "--agent", "/usr/bin/python3 %s; exit $?" % probe, "--pass-env", "MY_KEY",
                            "--pass-env", "MYPFX_*"],
             env=env, preexec_fn=hostile_start, pass_fds=(leaked.fileno(),))
    leaked.close()
    tid = f.submit("print what you have", labels={"team": "web"})
    f.wait_states([tid], {"succeeded"}, 30)
    folder = os.path.join(work, str(tid))

    def read(name):
        with open(os.path.join(folder, name)) as fh:
            return fh.read()

    names = {line.split("=", 1)[0] for line in read("env.txt").splitlines() if "=" in line}
    for secret in ("SECRET_TOKEN", "FZ_PRIVATE_NOTE", "ANTHROPIC_API_KEY"):
        h.check(secret not in names, "the agent got %s" % secret)
    for wanted in ("MY_KEY", "MYPFX_A", "FZ_TASK_ID", "FZ_ATTEMPT", "FZ_REPORT", "FZ_WORKDIR",
                   "FZ_BROKER", "FZ_WORKER", "FZ_LABEL_TEAM", "PATH"):
        h.check(wanted in names, "the agent lacks %s: %s" % (wanted, sorted(names)))
    odd = sorted(n for n in names if n not in BASICS and not n.startswith(("FZ_", "LC_"))
                 and n not in ("MY_KEY", "MYPFX_A"))
    h.check(not odd, "the agent got variables nobody allowed: %s" % odd)
    fds = sorted(int(p) for p in read("fds.txt").split())
    h.check(fds == [0, 1, 2], "the agent's descriptors: %s" % fds)
    sig = dict(line.split(":") for line in read("sig.txt").splitlines())
    h.check(int(sig["SigBlk"], 16) == 0, "signals blocked in the agent: %s" % sig["SigBlk"])
    h.check(int(sig["SigIgn"], 16) == 0, "signals ignored in the agent: %s" % sig["SigIgn"])
    h.check(read("pwd.txt").strip() == os.path.realpath(folder), "cwd %r" % read("pwd.txt"))
    print("agent env: %d variables, none unasked; fds %s; SigBlk %s SigIgn %s; cwd its own"
          % (len(names), fds, sig["SigBlk"].strip(), sig["SigIgn"].strip()))


h.run("agent_isolation", body)
