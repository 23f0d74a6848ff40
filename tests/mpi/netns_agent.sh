#!/usr/bin/env bash
# Open MPI's launch agent (plm_rsh_agent) for tests/mpi/netns_test.sh: "ssh HOST CMD..." becomes
# "run CMD in the network namespace that owns HOST's address".
host=$1; shift
case "$host" in
  10.77.0.1) ns=mproc-mpi-a ;;
  10.77.0.2) ns=mproc-mpi-b ;;
  *) echo "netns_agent: unknown host $host" >&2; exit 1 ;;
esac
exec ip netns exec "$ns" /bin/sh -c "$*"
