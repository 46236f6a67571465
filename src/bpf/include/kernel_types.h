/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The few kernel and protocol types the dataplane needs, declared here so the
 * build needs clang and nothing else: no kernel, libc or UAPI headers.
 *
 * Values are the kernel's ABI (include/uapi/linux/bpf.h, if_ether.h, ip.h,
 * ipv6.h, pkt_cls.h); they never change once released.
 */
#ifndef LNETD_KERNEL_TYPES_H
#define LNETD_KERNEL_TYPES_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;
typedef __u32 __wsum;

/*
 * The XDP context. preserve_access_index makes libbpf relocate field offsets
 * against the running kernel's BTF (CO-RE), so this private copy cannot drift.
 */
struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
} __attribute__((preserve_access_index));

/*
 * The TC context, up to the last field a hook shim reads. CO-RE relocates each
 * field by name, as for xdp_md; the prefix is still the UAPI layout so the
 * offsets are right even before relocation. The pointer fields are 8 bytes
 * wide and 8-aligned on every architecture (UAPI __bpf_md_ptr).
 */
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;
	__u32 data_end;
	__u32 napi_id;
	__u32 family;
	__u32 remote_ip4;
	__u32 local_ip4;
	__u32 remote_ip6[4];
	__u32 local_ip6[4];
	__u32 remote_port;
	__u32 local_port;
	__u32 data_meta;
	union {
		void *flow_keys;
		__u64 : 64;
	} __attribute__((aligned(8)));
	__u64 tstamp;
	__u32 wire_len;
	__u32 gso_segs;
	union {
		void *sk;
		__u64 : 64;
	} __attribute__((aligned(8)));
	__u32 gso_size;
} __attribute__((preserve_access_index));

/*
 * Just enough of the kernel's own structs to read a device's MTU in place,
 * through the context bpf_cast_to_kern_ctx returns (Linux 6.2+); CO-RE
 * relocates each field against the running kernel (sk_buff's `dev` sits in
 * anonymous unions there, which libbpf's field matching walks into).
 */
struct net_device {
	unsigned int mtu;
} __attribute__((preserve_access_index));

struct xdp_rxq_info {
	struct net_device *dev;
} __attribute__((preserve_access_index));

struct xdp_buff {
	struct xdp_rxq_info *rxq;
} __attribute__((preserve_access_index));

struct sk_buff {
	struct net_device *dev;
	/* The route the stack chose for it (a dst_entry; bit 0: not refcounted). */
	unsigned long _skb_refdst;
} __attribute__((preserve_access_index));

/*
 * Just enough of a route to tell whether its next hop is a gateway: the
 * address family behind a dst_entry, IPv4's rtable and IPv6's rt6_info (each
 * begins with its dst_entry). Read through bpf_rdonly_cast: loads the
 * verifier turns into faulting-safe kernel reads, with no helper call (and so
 * not refused under lockdown, as bpf_probe_read_kernel is).
 */
struct dst_ops {
	unsigned short family;
} __attribute__((preserve_access_index));

struct dst_entry {
	struct dst_ops *ops;
} __attribute__((preserve_access_index));

struct rtable {
	__u8 rt_gw_family;
} __attribute__((preserve_access_index));

struct rt6_info {
	__u32 rt6i_flags;
} __attribute__((preserve_access_index));

#define AF_INET 2
#define AF_INET6 10
/* rt6_info.rt6i_flags: the route goes through a gateway (include/uapi/linux/ipv6_route.h). */
#define RTF_GATEWAY 0x0002

/*
 * The kernel's struct behind a program's context: the verifier replaces the
 * call with one register move. Weak: where the kernel lacks it, libbpf leaves
 * a call the verifier never reaches, as long as the rodata flags that guard
 * every use (`mtu_in_place`, `on_link_pass`) are 0 there.
 */
extern void *bpf_cast_to_kern_ctx(void *obj) __attribute__((section(".ksyms"), weak));
/* A kernel address as a read-only pointer to the kernel type `btf_id` (Linux 6.2+; weak, as above, behind `on_link_pass`). */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __attribute__((section(".ksyms"), weak));

/* TC (sched_cls / tcx) verdicts; tcx shares the values. */
#define TC_ACT_UNSPEC (-1)
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
/* bpf_skb_adjust_room(): the room is right after the MAC header; gso_size is kept. */
#define BPF_ADJ_ROOM_MAC 1
#define BPF_F_ADJ_ROOM_FIXED_GSO (1ULL << 0)
/* ... and CHECKSUM_UNNECESSARY is kept (the IP packet is not touched). */
#define BPF_F_ADJ_ROOM_NO_CSUM_RESET (1ULL << 5)

enum xdp_action {
	XDP_ABORTED = 0,
	XDP_DROP,
	XDP_PASS,
	XDP_TX,
	XDP_REDIRECT,
};

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LPM_TRIE = 11,
};

/* Map flag: LPM tries must be created without preallocation. */
#define BPF_F_NO_PREALLOC (1U << 0)
#define BPF_F_MMAPABLE (1U << 10)

#define ETH_ALEN 6
#define ETH_P_IP 0x0800
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define ETH_P_IPV6 0x86DD
#define ETH_P_MPLS_UC 0x8847

struct ethhdr {
	__u8 h_dest[ETH_ALEN];
	__u8 h_source[ETH_ALEN];
	__be16 h_proto;
} __attribute__((packed));

struct vlan_hdr {
	__be16 h_vlan_TCI;
	__be16 h_vlan_encapsulated_proto;
};

struct iphdr {
	__u8 ihl : 4, version : 4; /* little-endian bitfield order (BPF targets here are bpfel) */
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

struct in6_addr {
	__u8 s6_addr[16];
};

struct ipv6hdr {
	__u8 priority : 4, version : 4;
	__u8 flow_lbl[3];
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	struct in6_addr saddr;
	struct in6_addr daddr;
};

#endif /* LNETD_KERNEL_TYPES_H */
