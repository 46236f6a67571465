// The floor under issue 23's "S-BFD at 10 ms on 1,000 lists costs at most 2%
// of one core", with none of the project's code: what this machine charges a
// thread that wakes every tick and sends frames through XDP live frames.
//
// In a network namespace of its own (created here, gone when it exits): a
// veth pair whose peer drops every frame in native XDP (the S-BFD bench's
// `sbfd0`/`sbfd1`), a two-instruction XDP_TX program run by
// BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (and attached, generic,
// to the namespace's loopback, which keeps it in the kernel's XDP dispatcher
// as the engine does), one call per tick. Prints the thread's CPU
// (getrusage RUSAGE_THREAD) as % of one core for: sleeping alone, then a
// call of 1 frame, then of FRAMES frames, per tick.
//
//   gcc -O2 -o /tmp/sbfd-floor scripts/sbfd-floor.c && sudo /tmp/sbfd-floor [TICK_US [FRAMES [SECONDS]]]
//
// Defaults: 2500 us (a quarter of 10 ms, the engine's tick), 286 frames
// (1,000 lists every 8.75 ms on average, over 3.5 ticks), 10 s per row.
// BATCH=N sets the calls' batch_size (the kernel's default is 64; 8 and 256
// changed nothing beyond the noise here).
// Measured with it: docs/liveness.md, "The answers' read, and the machine's floor".
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static int load(int action)
{
	struct bpf_insn insns[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = action },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.prog_type = BPF_PROG_TYPE_XDP;
	a.insns = (uintptr_t)insns;
	a.insn_cnt = 2;
	a.license = (uintptr_t) "GPL";
	int fd = bpf(BPF_PROG_LOAD, &a);
	if (fd < 0) {
		perror("BPF_PROG_LOAD");
		exit(1);
	}
	return fd;
}

static void attach(int prog, const char *dev, unsigned flags)
{
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.link_create.prog_fd = prog;
	a.link_create.target_ifindex = if_nametoindex(dev);
	a.link_create.attach_type = BPF_XDP;
	a.link_create.flags = flags;
	if (bpf(BPF_LINK_CREATE, &a) < 0) {
		fprintf(stderr, "attaching to %s: %s\n", dev, strerror(errno));
		exit(1);
	}
}

static double thread_cpu(void)
{
	struct rusage r;
	getrusage(RUSAGE_THREAD, &r);
	return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

// One row: `seconds` of ticks, each a call of `frames` frames (-1: no call).
static void row(int prog, int ifindex, long tick_us, int frames, double seconds)
{
	unsigned char frame[96] = { 0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x88, 0x47 };
	struct xdp_md ctx = { .data_end = sizeof(frame), .ingress_ifindex = ifindex };
	struct timespec next;
	clock_gettime(CLOCK_MONOTONIC, &next);
	long ticks = (long)(seconds * 1e6 / tick_us), failed = 0;
	double c0 = thread_cpu(), w0 = now();
	for (long i = 0; i < ticks; i++) {
		next.tv_nsec += tick_us * 1000;
		while (next.tv_nsec >= 1000000000) {
			next.tv_nsec -= 1000000000;
			next.tv_sec++;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
		if (frames < 0)
			continue;
		union bpf_attr a;
		memset(&a, 0, sizeof(a));
		a.test.prog_fd = prog;
		a.test.data_in = (uintptr_t)frame;
		a.test.data_size_in = sizeof(frame);
		a.test.ctx_in = (uintptr_t)&ctx;
		a.test.ctx_size_in = sizeof(ctx);
		a.test.repeat = frames;
		a.test.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
		a.test.batch_size = getenv("BATCH") ? atoi(getenv("BATCH")) : 0;
		if (frames > 0 && bpf(BPF_PROG_TEST_RUN, &a) < 0)
			failed++;
	}
	double cpu = thread_cpu() - c0, wall = now() - w0;
	printf("%-28s %6.2f%% of one core, %5.1f us a tick%s", frames < 0 ? "sleep only" : "", 100 * cpu / wall,
	       cpu / ticks * 1e6, failed ? " (calls failed)" : "");
	if (frames >= 0)
		printf(" [%d frames a call, %.0f frames/s]", frames, frames / (tick_us / 1e6));
	printf("\n");
}

int main(int argc, char **argv)
{
	long tick_us = argc > 1 ? atol(argv[1]) : 2500;
	int frames = argc > 2 ? atoi(argv[2]) : 286;
	double seconds = argc > 3 ? atof(argv[3]) : 10;
	if (tick_us < 1 || frames < 1 || seconds * 1e6 < tick_us) {
		fprintf(stderr, "usage: %s [TICK_US >= 1 [FRAMES >= 1 [SECONDS >= one tick]]]\n", argv[0]);
		return 2;
	}
	if (unshare(CLONE_NEWNET)) {
		perror("unshare(CLONE_NEWNET) (run as root)");
		return 1;
	}
	if (system("ip link set lo up && ip link add fl0 type veth peer name fl1 && ip link set fl0 up && ip link set fl1 up"))
		return 1;
	int tx = load(XDP_TX), drop = load(XDP_DROP);
	attach(drop, "fl1", XDP_FLAGS_DRV_MODE);
	attach(tx, "lo", XDP_FLAGS_SKB_MODE);
	usleep(200000);
	int ifindex = if_nametoindex("fl0");
	printf("ticks of %ld us, %.0f s a row:\n", tick_us, seconds);
	row(tx, ifindex, tick_us, -1, seconds);
	row(tx, ifindex, tick_us, 1, seconds);
	row(tx, ifindex, tick_us, frames, seconds);
	return 0;
}
