/* noded-bench subcommands that live outside bench.c. Each returns the
 * process exit status. */
#ifndef ND_PERF_CMDS_H
#define ND_PERF_CMDS_H

int nd_bench_tasks(int argc, char **argv);
int nd_bench_spawn(int argc, char **argv);
int nd_bench_workers(int argc, char **argv);
int nd_bench_first(int argc, char **argv);

#endif
