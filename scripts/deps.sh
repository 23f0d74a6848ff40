#!/usr/bin/env bash
# Installs the Debian packages mproc needs to build, test, benchmark and run its demo.
# As root it runs apt-get; otherwise it prints the exact command to run and stops.
set -euo pipefail

packages=(
  cmake make g++ pkg-config        # build
  libcereal-dev                    # codec
  libssl-dev                       # Manager: HMAC-SHA256 (libcrypto)
  libgtest-dev                     # tests
  clang-14 libclang-rt-14-dev      # make fuzz: libFuzzer (fuzz/), with ASan+UBSan
  libstb-dev                       # examples/image_blur.cpp: stb_image, stb_image_write
  libbenchmark-dev                 # bench/
  libboost-dev                     # bench/: Boost.Interprocess as a peer
  libtbb-dev                       # bench/: oneTBB as a peer of Pool (optional at configure)
  python3-joblib                   # bench/ Python peers: loky, beside ProcessPoolExecutor
  python3                          # bench/ Python peers
  gnuplot-nox                      # bench/ plot
  openmpi-bin libopenmpi-dev       # mproc::mpi (optional at configure)
  python3-mpi4py                   # bench/mpi: mpi4py.futures as a peer
)

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

cmd=(apt-get install -y --no-install-recommends "${missing[@]}")
if [ "$(id -u)" -ne 0 ]; then
  echo "mproc needs these Debian packages: ${missing[*]}" >&2
  echo "Install them with:" >&2
  echo "  sudo apt-get update && sudo ${cmd[*]}" >&2
  exit 1
fi

echo "Installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
"${cmd[@]}"
