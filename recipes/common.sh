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

# Print a command (quoted, so it can be copied back even with spaces in a path), then run it
# (set -e in the caller stops the recipe at the first failure).
run() {
    echo "+ $(printf '%q ' "$@")" >&2
    "$@"
}

# die MESSAGE: one error line and exit 2, as the console commands do for bad input.
die() {
    echo "error: $*" >&2
    exit 2
}

# need_dirs DIR...: every input folder exists, checked before an hour of training, not after it.
need_dirs() {
    local dir
    for dir in "$@"; do
        [[ -d $dir ]] || die "$dir: folder not found (see the script's header for the layout it needs)"
    done
}

# need_files FILE...: every input file exists.
need_files() {
    local file
    for file in "$@"; do
        [[ -f $file ]] || die "$file: file not found"
    done
}

# refuse_finished RUN_DIR...: a recipe replaces its runs (--overwrite), so a second call with the
# same OUT would destroy a finished run, and a failure half-way would leave it half old, half new.
# FORCE=1 replaces them on purpose.
refuse_finished() {
    local dir
    [[ ${FORCE:-0} == 1 ]] && return 0
    for dir in "$@"; do
        if [[ -e $dir/last.pt ]]; then
            die "$dir already holds a training run; choose another OUT, or set FORCE=1 to replace it"
        fi
    done
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
