#!/usr/bin/env bash
# Usage: netns_test.sh MPIEXEC EXE — the executor suite across two network namespaces joined by
# a veth pair: mpiexec and rank 0 in mproc-mpi-a (10.77.0.1), the worker ranks in mproc-mpi-b
# (10.77.0.2), started through netns_agent.sh as Open MPI would start them over ssh; MPI traffic
# goes over TCP on the veth pair only. Exits 77 (ctest SKIP) with the reason when namespaces
# cannot be made here. The namespaces are removed whatever happens.
set -u
mpiexec=$1 exe=$2
here=$(cd "$(dirname "$0")" && pwd)
skip() { echo "SKIP: $*"; exit 77; }
command -v ip >/dev/null || skip "the ip command (iproute2) is missing"
[ "$(id -u)" -eq 0 ] || skip "network namespaces need root"
cleanup() {
  ip netns del mproc-mpi-a 2>/dev/null
  ip netns del mproc-mpi-b 2>/dev/null
}
trap cleanup EXIT
cleanup
ip netns add mproc-mpi-a 2>/dev/null || skip "ip netns add is not permitted on this machine"
ip netns add mproc-mpi-b || skip "ip netns add is not permitted on this machine"
ip link add mproc-veth-a type veth peer name mproc-veth-b 2>/dev/null || skip "cannot create a veth pair"
ip link set mproc-veth-a netns mproc-mpi-a || exit 1
ip link set mproc-veth-b netns mproc-mpi-b || exit 1
ip -n mproc-mpi-a addr add 10.77.0.1/24 dev mproc-veth-a || exit 1
ip -n mproc-mpi-b addr add 10.77.0.2/24 dev mproc-veth-b || exit 1
for ns in a b; do
  ip -n mproc-mpi-$ns link set lo up || exit 1
  ip -n mproc-mpi-$ns link set mproc-veth-$ns up || exit 1
done
# Reachability without ping: a TCP connect to a closed port is refused only if packets pass.
ip netns exec mproc-mpi-a timeout 5 bash -c 'exec 3<>/dev/tcp/10.77.0.2/9' 2>&1 | grep -q refused ||
  skip "the veth pair does not pass traffic"
hosts=$(mktemp)
printf '10.77.0.1 slots=1\n10.77.0.2 slots=3\n' > "$hosts"
trap 'rm -f "$hosts"; cleanup' EXIT
timeout 120 ip netns exec mproc-mpi-a "$mpiexec" --allow-run-as-root --oversubscribe \
  --hostfile "$hosts" -n 4 \
  --mca plm_rsh_agent "$here/netns_agent.sh" --mca plm_rsh_no_tree_spawn 1 \
  --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 \
  --mca oob_tcp_if_include 10.77.0.0/24 \
  -x OMPI_ALLOW_RUN_AS_ROOT=1 -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  "$exe"
