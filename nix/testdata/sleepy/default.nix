# A package set whose only package never finishes building, for the timeout
# test. The test replaces @PIDFILE@ with a file that receives the process
# ids of the builder and of its sleep, so it can check that both are gone.
{ system ? "x86_64-linux", ... }:
{
  sleepy = derivation {
    name = "sleepy";
    inherit system;
    builder = "/bin/bash";
    args = [ "-c" "echo $$ > @PIDFILE@.tmp; /bin/sleep 300 & echo $! >> @PIDFILE@.tmp; /bin/mv @PIDFILE@.tmp @PIDFILE@; wait; exit 0" ];
  };
}
