# Sourced by .ci/run and .ci/newest: sets PYTHON to a Python >= 3.12, or stops with the fix.
find_python() {
  local candidate pyenv_bin prefix
  for candidate in python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 12))' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  # pyenv's shims may be off PATH (a non-interactive shell): ask pyenv itself.
  for pyenv_bin in "$(command -v pyenv 2>/dev/null)" "${PYENV_ROOT:-}/bin/pyenv" "$HOME/.pyenv/bin/pyenv"; do
    [ -n "$pyenv_bin" ] && [ -x "$pyenv_bin" ] || continue
    prefix=$("$pyenv_bin" prefix 3.12 2>/dev/null || true)
    if [ -n "$prefix" ] && [ -x "$prefix/bin/python3" ]; then echo "$prefix/bin/python3"; return 0; fi
  done
  return 1
}

PYTHON=$(find_python) || {
  echo "error: mflangevin needs Python >= 3.12, and none was found on PATH or through pyenv." >&2
  echo "       Install it (for example 'pyenv install 3.12') and run the script again." >&2
  exit 1
}
echo "Using $("$PYTHON" --version) at $PYTHON"
