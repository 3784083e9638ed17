#!/usr/bin/env bash
# scripts/agents/claude against a stand-in `claude` that prints Claude Code's stream-json: the
# report lines (cost, tokens, model, summary) reach the attempt's record through a real
# broker and worker, and an is_error reply fails the attempt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib/fzlib.sh"

fake="$FZ_TMP/fake-claude"
cat >"$fake" <<'SH'
#!/usr/bin/env bash
# prints what `claude -p --output-format stream-json --verbose` prints, in short
prompt=$(cat)
err=false; case $prompt in *fail*) err=true ;; esac
printf '{"type":"system","subtype":"init","model":"claude-sonnet-4-5","permissionMode":"acceptEdits"}\n'
printf '{"type":"assistant","message":{"id":"m1","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Done"}],"usage":{"input_tokens":100,"cache_read_input_tokens":20,"cache_creation_input_tokens":3,"output_tokens":1}}}\n'
printf '{"type":"result","subtype":"success","is_error":%s,"result":"Done: %s\\nmore","total_cost_usd":0.0421,"usage":{"input_tokens":100,"cache_read_input_tokens":20,"cache_creation_input_tokens":3,"output_tokens":45}}\n' "$err" "$prompt"
SH
chmod +x "$fake"

fz_start_broker --models sonnet
fz_start_worker c --models sonnet --agent "FZ_CLAUDE=$fake $FZ_SRC/scripts/agents/claude"
out=$("$FZ_BIN/fz-submit" --model sonnet --wait --quiet "fix the bug")
id=${out%%$'\n'*} # the id comes first, then the result line
json=$("$FZ_BIN/fz-ctl" --json show "$id")
/usr/bin/python3 - "$json" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); a = r["attempts"][0]
assert r["task"]["state"] == "succeeded", r["task"]["state"]
assert abs(a["cost_usd"] - 0.0421) < 1e-9, a["cost_usd"]
# tokens_in is fresh input only (cache reads and writes have report keys of their own)
assert a["tokens_in"] == 100 and a["tokens_out"] == 45, (a["tokens_in"], a["tokens_out"])
assert a["model"] == "claude-sonnet-4-5", a["model"]  # the model Claude says it used
assert a["summary"] == "Done: fix the bug more", a["summary"]  # the answer, on one line
PY
rc=0
"$FZ_BIN/fz-submit" --model sonnet --wait --quiet "please fail" >/dev/null || rc=$?
fz_assert_eq "$rc" 1 "an is_error reply should fail the task"
echo "PASS claude_adapter"
