# Shared by the recipe scripts (sourced, not run): argument check, command echo, and the settings
# every recipe reads from the environment (CONFIG, EXTRA, MEDFUSE_THREADS).

# need_args COUNT USAGE "$@": exit 2 with the usage line unless exactly COUNT arguments were given.
need_args() {
    local count=$1 usage=$2
    shift 2
    if [[ $# -ne $count ]]; then
        echo "usage: $usage" >&2
        exit 2
    fi
}

# Print a command, then run it (set -e in the caller stops the recipe at the first failure).
run() {
    echo "+ $*" >&2
    "$@"
}

# The baselines every recipe's quality report scores the model against: all of medfuse-bench's but
# the plain average, which no user would take over the maximum.
BASELINES=maximum,maximum-of-inputs,laplacian,wavelet,guided-filter

RECIPES=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONFIG=${CONFIG:-$RECIPES/harvard.toml}
read -r -a EXTRA <<<"${EXTRA:-}"
THREADS=()
if [[ -n ${MEDFUSE_THREADS:-} ]]; then  # an `[[ ]] &&` line would end the sourcing with status 1 under set -e
    THREADS=(--threads "$MEDFUSE_THREADS")
fi
