"""Where every profile field comes from: one line of provenance per field of
:class:`vsockbench.profiles.Profile` (``profiles.SOURCES``, re-exported there).

Each text starts with its kind: ``code:`` a constant in the cited kernel or VMM source,
``est:`` a first estimate (from a measured row or a cited measurement, before calibration),
``fit:`` or ``calibrated`` a fitted value; tests/test_profiles.py checks every field has one.
"""

from __future__ import annotations

__all__ = ["SOURCES"]

# Where each default comes from.  "code:" = a constant in the cited source;
# "est:" = a first estimate from a row of shared/measured (before calibration).
SOURCES: dict[str, str] = {
    "ring_size": "code: QEMU VHOST_VSOCK_QUEUE_SIZE=128 (hw/virtio/vhost-vsock-common.h); "
    "Firecracker FIRECRACKER_MAX_QUEUE_SIZE=256 (devices/virtio/vsock)",
    "indirect_desc": "code: vhost offers RING_F_INDIRECT_DESC (drivers/vhost/vhost.h VHOST_FEATURES); "
    "Firecracker AVAIL_FEATURES and vhost-device-vsock do not -> header+data = 2 slots",
    "rx_buf_payload_bytes": "code: VIRTIO_VSOCK_DEFAULT_RX_BUF_SIZE=4096 (include/linux/virtio_vsock.h)",
    "guest_rx_sgs": "code: virtio_vsock_rx_fill() posts an RX buffer as one linear skb since 71dc9ec9ac7d "
    "('replace virtio_vsock_pkt with sk_buff', 6.3), as header + buffer (two sgs) before; without INDIRECT_DESC "
    "each sg is a ring slot, so a 256-entry ring holds 128 buffers for older guests (vsockbench.kernels)",
    "max_pkt_bytes": "code: VIRTIO_VSOCK_MAX_PKT_BUF_SIZE=64 KiB (virtio_transport_send_pkt_info)",
    "seqpacket": "code: vhost VHOST_VSOCK_FEATURES has F_SEQPACKET; vhost-device-vsock and Firecracker offer STREAM only",
    "weight_pkts": "code: VHOST_VSOCK_PKT_WEIGHT=256 (drivers/vhost/vsock.c); userspace backends drain (0 = no weight)",
    "weight_bytes": "code: VHOST_VSOCK_WEIGHT=0x80000 (drivers/vhost/vsock.c)",
    "host_buf_alloc_bytes": "code: vhost host socket VSOCK_DEFAULT_BUFFER_SIZE=256 KiB (af_vsock.c); "
    "Firecracker CONN_TX_BUF_SIZE=64 KiB (csm/mod.rs); vhost-device-vsock tx_buffer_size=64 KiB",
    "host_credit_threshold_bytes": "code: Linux VIRTIO_VSOCK_MAX_PKT_BUF_SIZE=64 KiB rule "
    "(virtio_transport_stream_do_dequeue); Firecracker CONN_CREDIT_UPDATE_THRESHOLD=4 KiB of free space since PR #1910 "
    "(June 2020; before it an update per 48 KiB forwarded: vsockbench.kernels); vhost-device-vsock tx_buffer_size/4",
    "host_credit_on_drain": "code: Linux 93b80887668 (Dec 2023) also updates when the reader drains its queue; userspace backends do not",
    "host_sends_credit_request": "code: Firecracker connection.rs and vhost-device-vsock vsock_conn.rs send CREDIT_REQUEST at 0 peer credit; Linux never does. Firecracker stops polling a connection without credit (get_polled_evset), so in a stream it never asks (model/backend.py)",
    "linux_tx_window_min": "code: Linux 8ee784fdf006 (virtio_transport_tx_buf_size, upstream Jan 2026 and stable "
    "backports) caps a sender's window at min(peer_buf_alloc, its own buf_alloc); before it peer_buf_alloc alone. "
    "False for every setup that names its kernel (all measured before 2026: vsockbench.kernels); it differs only "
    "when the two ends' buffers differ",
    "guest_credit_on_drain": "code: Linux 93b80887668 (net, Dec 2023: 6.7 and stable); false for older guests (vsockbench.kernels)",
    "credit_update_every_read": "code: before b89d882dc9fc (Linux 5.4) virtio_transport_stream_do_dequeue() sent a "
    "CREDIT_UPDATE after every read; applies to the Linux ends (guest; host with vhost) - see vsockbench.kernels",
    "uds_buffer_bytes": "code: net.core.wmem_default=212992 (AF_UNIX socket buffer between a userspace backend and the host app). "
    "Simplification: counted in payload bytes, where the kernel charges each skb's truesize to the writer "
    "(unix_stream_sendmsg -> sock_alloc_send_pskb, skb_set_owner_w; a 1 KiB write takes ~2.3 KB), so small "
    "writes fill it about twice as soon; only how often the host writer is woken (unix_writable) depends on it",
    "rx_round_robin": "est: a policy option, no shipped backend uses it: a pass serves the pending connections a packet each, "
    "round robin, until they run dry (until 2026-11-28 the vhost-user estimate, read from vhost-device-vsock's "
    "backend_rxq; its recv_pkt pops a connection's key without pushing it back: backend_rx_one_per_pass)",
    "guest_send_call_ns": "est: lkml_leonardi_fastpath_2024 64 B RTT (16.8 us mean) split over both send paths",
    "guest_send_per_pkt_ns": "est: lkml_krasnov_zerocopy_rfc_v5_2023 send_cost_skb_alloc (~0.3-0.8 us per skb)",
    "guest_copy_ns_per_kib": "est: lkml_krasnov_zerocopy_rfc_v5_2023 send_cost_memcpy 64 KiB; ~10 GB/s memcpy",
    "guest_recv_call_ns": "est: as guest_send_call_ns",
    "guest_recv_per_pkt_ns": "est: virtio_transport_recv_pkt lookup+lock_sock+enqueue per buffer; from lkml_garzarella2019_v4 h2g 4 KiB",
    "guest_txq_per_pkt_ns": "est: virtqueue_add_sgs / virtqueue_get_buf per packet in send_pkt_work and tx_work",
    "guest_rx_refill_ns": "est: virtio_vsock_alloc_linear_skb + virtqueue_add_inbuf per RX buffer (virtio_vsock_rx_fill)",
    "guest_pin_ns_per_page": "est: lkml_krasnov_zerocopy_rfc_v5_2023 send_cost_pin 3.5 us per 64 KiB (16 pages)",
    "guest_kick_ns": "est: MMIO/PIO write VM exit + ioeventfd (KVM commit 68c3b4d1: 'essentially as fast as PIO'); ~2 us",
    "guest_irq_ns": "est: irqfd injection + guest IRQ entry + queue_work on the vCPU + the kworker run it wakes. "
    "Firecracker (virtio-mmio): 4 us, vm_interrupt's INTERRUPT_STATUS read and INTERRUPT_ACK write, two MMIO exits to "
    "the VMM's vCPU thread, scaled and not fitted (fitparams.SCALED_ONLY); 4 / 2.5 / 1 us (with backend_signal_ns and "
    "kvm_irq_inject_ns) is the best of nine combinations tried against Firecracker PR #5872's EVENT_IDX effect "
    "(findings, the interrupt-cost variants), so those values are not independent of it",
    "guest_wq_latency_ns": "est: workqueue hop, queue_work() -> the kworker runs (scheduling delay on the vCPU)",
    "guest_wq_run_ns": "est: CPU of one send_pkt_work run besides its work: the sender's queue_work() waking the "
    "kworker (kick_pool -> wake_up_process) and the switches to it and back (__schedule); ~0.5 us per switch of a "
    "kernel thread with mitigations (rx_work / tx_work runs are queued by the interrupt: in guest_irq_ns). Firecracker's "
    "estimate is 0: its CI guests (4.14, 5.10) have no fast path, so no row tells the hop from the per-packet costs, and "
    "with 1.5 us the 1 -> 2 vCPU extrapolation got worse (held-out max m6i 41 -> 111 %, m5d 80 -> 145 %). The TX fast path "
    "(efcd71af38be) removes it for send_pkt_work: lkml_leonardi_fastpath_2024 saves 3.2 us of a 64 B round trip",
    "guest_wakeup_latency_ns": "est: sleeping task wake-up on an idle vCPU",
    "guest_cross_vcpu_pkt_ns": "est: a packet rx_work delivers, or send_pkt_work adds, on a vCPU other than its socket's "
    "application's (pinned guests, model/guest.py): the socket's receive state (rx_lock, rx_queue, counters, wait queue) "
    "or the sender's packet and send_pkt_queue come from the other vCPU's cache (~5-10 lines at ~0.1 us), and a "
    "sleeping reader is woken with a reschedule IPI (smp_send_reschedule: an x2APIC ICR write, a VM exit of ~1-2 us "
    "without IPI virtualisation); no row at one vCPU sees it, so it is an estimate times the fitted time scale. 1.5 us "
    "is the middle of that range; 1 and 2 us were tried beside it on the held-out rows (README, Firecracker 1 -> 2 "
    "vCPUs), so the value is not independent of them",
    "backend_wakeup_latency_ns": "est: ioeventfd/eventfd wake-up of the backend thread",
    "backend_per_pkt_ns": "est: vhost_get_vq_desc + skb alloc + recv_pkt + add_used; lkml_garzarella2019_v4 g2h 4 KiB 5.5 Gbps",
    "backend_h2g_per_skb_ns": "est: vhost_transport_do_send_pkt() per skb besides its buffers (dequeue from send_pkt_queue, "
    "free, sk_write_space); small: lkml_garzarella2019_v4 h2g >= 64 KiB is as fast with 4 KiB skbs (5.2) as with 64 KiB (5.4)",
    "backend_per_rxbuf_ns": "est: one guest RX buffer filled by the backend; lkml_garzarella2019_v4 h2g 64 KiB 21.9 Gbps",
    "backend_copy_ns_per_kib": "est: lkml_garzarella2019_v4 g2h 64 KiB 35.3 Gbps (copy-bound)",
    "backend_signal_ns": "est: eventfd_signal(call_ctx) -> irqfd. Firecracker: 2.5 us, the VMM's write() to the "
    "irqfd's eventfd (a syscall with mitigations, irqfd_wakeup, schedule_work), scaled and not fitted (guest_irq_ns)",
    "backend_syscall_ns": "est: one read()/write()/epoll_ctl() of a userspace backend; fc_pr2574_measured_2021 h2g 1 KiB",
    "backend_loop_ns": "est: one epoll_wait round of a userspace event loop",
    "backend_wake_app_ns": "est: a userspace backend's write() to the host application's Unix socket that finds "
    "its reader asleep (unix_stream_sendmsg -> sk_data_ready -> try_to_wake_up: select_task_rq, the remote run "
    "queue's lock, the enqueue and a reschedule IPI to its idle core), or a read() that wakes a writer waiting for "
    "space (unix_write_space); the waker's CPU, beside backend_syscall_ns",
    "backend_other_util": "est: share of the VMM thread taken by the VM's other devices (net, block); 0 = idle",
    "kvm_irq_inject_ns": "code: an irqfd on a GSI (IRQCHIP) route cannot inject in atomic context "
    "(kvm_arch_set_irq_inatomic returns -EWOULDBLOCK for non-MSI routes, arch/x86/kvm/irq_comm.c), so irqfd_wakeup "
    "schedule_work()s irqfd_inject on the signalling CPU (virt/kvm/eventfd.c): a kworker on the VMM's core, outside "
    "its thread's CPU. Firecracker's virtio-mmio devices signal GSIs (register_irqfd(interrupt_evt, irq)); QEMU's "
    "virtio-pci (vhost, vhost-user) signals MSI-X, injected inline: 0. est: the kworker's wake-up, two context "
    "switches and kvm_set_irq (assert, deassert) through the PIC and IOAPIC: 1 us (guest_irq_ns)",
    "kvm_irq_inject_inline": "code: arm64 injects an SPI (IRQCHIP route) in atomic context since 'KVM: arm64: Allow "
    "in-atomic injection of SPIs' (Marc Zyngier, Aug 2020, 5.9: kvm_arch_set_irq_inatomic -> vgic_irqfd_set_irq, "
    "arch/arm64/kvm/vgic/vgic-irqfd.c), so on a Graviton host of 5.10 or later the injection runs in the VMM thread's "
    "eventfd write (irqfd_wakeup), not in a kworker: charged to the VMM thread (vsockbench.kernels). est: the "
    "injection alone, 0.3 of kvm_irq_inject_ns (no kworker wake-up, no context switches: model/backend.py "
    "INLINE_INJECT_SHARE)",
    "host_send_call_ns": "est: host sendmsg() fixed cost",
    "host_copy_ns_per_kib": "est: host user<->kernel copy, ~10 GB/s",
    "host_recv_call_ns": "est: host recvmsg() fixed cost",
    "host_wakeup_latency_ns": "est: host task wake-up",
    "jitter_sigma": "est: log-normal sigma of wake-up latencies; lkml_leonardi_fastpath_2024 p99/mean ~2.5",
    "halt_poll_ns": "code: x86 KVM_HALT_POLL_NS_DEFAULT=200000 (arch/x86/include/asm/kvm_host.h), the kvm.halt_poll_ns "
    "module parameter: an idle vCPU thread polls up to this long in kvm_vcpu_halt() before it sleeps, counted as its "
    "CPU time; the model grows and resets each vCPU's window as KVM does (model/cpu.py); 0 disables. arm64 hosts "
    "(the Graviton setups) have 500000 (arch/arm64/include/asm/kvm_host.h; vsockbench.kernels)",
    "device_event_idx": "code: VIRTIO_RING_F_EVENT_IDX offered by the device: vhost (VHOST_FEATURES) and vhost-device-vsock "
    "yes; Firecracker vsock only since PR #5872 (May 2026: +118 % h2g on m6i MMIO), so earlier Firecracker (CI 2020-2023) "
    "gets a kick per add/refill and interrupts per batch regardless of the guest (vsockbench.kernels)",
    "copy_hot_ratio": "est: a copy with little data in flight on its queue runs at this fraction of the "
    "*_copy_ns_per_kib (streaming) rates (vsockbench.model.copycost); 1 = no cache effect, the default until the "
    "backend's copies (model/backend.py) use it too. Estimate for the i7-10700KF's Comet Lake (Skylake-S) core: "
    "0.25 = L2 / L3 load latency 11 / 44 cycles (AnandTech 11550, Skylake-S vs Skylake-SP caches); fits of "
    "lkml_leonardi_fastpath_2024 with 4 KiB round trips give 0.18-0.33",
    "copy_cache_bytes": "est: per-core L2 of the i7-10700KF (Comet Lake = Skylake-S core: 256 KiB, 4-way; "
    "AnandTech 11550); one size for every machine (Skylake-SP/Ice Lake servers have 1-1.25 MiB)",
    "guest_preempt_none": "code: Firecracker's microvm guest kernels are built with CONFIG_PREEMPT_NONE=y "
    "(resources/guest_configs/microvm-kernel-x86_64-4.14.config, -x86_64-5.10.config, -arm64-5.10.config): a send() "
    "or a work item such as rx_work runs until it sleeps or returns, and a woken task waits for that "
    "(model/cpu.py; rx_work's run in the kernel's order, model/guest_rx.py). On in the Firecracker profiles, all "
    "fitted with it since 2026-11-27 (one that says false was fitted without it: README, PREEMPT_NONE guests); the "
    "distribution kernels of the vhost measurements are PREEMPT_VOLUNTARY, where lock_sock's might_sleep() is a "
    "preemption point in every packet",
    "guest_cmwq": "code: kernel/workqueue.c concurrency management (since 2.6.36): a per-CPU worker pool starts "
    "another work item only while none of its workers runs (need_more_worker(): nr_running == 0; "
    "wq_worker_sleeping() drops it when a worker sleeps, wq_worker_running() raises it on wake-up), so on a "
    "pinned vCPU send_pkt_work and tx_work queued behind a running rx_work wait for its run to end or sleep "
    "(model/workqueue.py WorkerPool). Every Linux guest has it; on in the Firecracker profiles (with guest_preempt_none), "
    "off in the vhost ones: refitted with it (2026-11-27) Garzarella's free 2-vCPU guests do not change, Leonardi's "
    "pinned guest predicts its held-out round trips and the fast path's gain worse (findings, Halt polling on arm64 "
    "and cmwq on vhost). "
    "Simplification: modelled on single-vCPU pools (pinned vCPUs, 1-vCPU guests) only",
    "guest_cfs_vruntime": "code: kernel/sched/fair.c (CFS, the 4.14-6.5 guests): vruntime is kept per run queue; "
    "place_entity() puts a task that becomes runnable no more than half the latency behind min_vruntime "
    "(GENTLE_FAIR_SLEEPERS), update_min_vruntime() follows the running task and the leftmost waiter, and a CPU's "
    "kworker runs that CPU's work items (send_pkt_work, tx_work, rx_work) with one vruntime (model/cpu.py Entity). "
    "With guest_preempt_none only (it decides who runs at a section end). On in the Firecracker profiles refitted "
    "since 2026-11-27 (findings, CFS vruntime per run queue); false: fitted with the earlier approximation, CPU time "
    "since the run's start as vruntime, which at two vCPUs never let send_pkt_work's kworker in and ran 1 KiB g2h "
    "streams stop-and-go",
    "backend_epoll_ctl_per_rx_pkt": "code: vhost-device-vsock: EPOLL_CTL_DEL at each EPOLLIN (vhu_vsock_thread.rs "
    "handle_event, epoll_unregister) and a re-register after the read (vsock_conn.rs recv_pkt): 2 per RX data packet, "
    "each a backend_syscall_ns; Firecracker's 2020-26 muxer none (its polled set is recomputed per pass)",
    "backend_rx_notify_every_pass": "code: vhost-device-vsock re-enables the RX virtqueue's notifications after "
    "every RX pass (vhu_vsock_thread.rs process_unix_sockets: vring.enable_notification() after each "
    "process_rx_queue, with EVENT_IDX), so the guest's next refill (virtio_vsock_rx_fill, below half the ring) kicks. False: kernel vhost enables them "
    "when send_pkt_queue drains (vhost_transport_do_send_pkt -> vhost_enable_notify, model/backend.py) and "
    "Firecracker offers no EVENT_IDX before PR #5872, so every refill kicks (device_event_idx)",
    "backend_credit_update_every_flush": "code: vhost-device-vsock queues a CREDIT_UPDATE after every EPOLLOUT "
    "flush of a connection's LocalTxBuf that moved bytes (vhu_vsock_thread.rs handle_event, EPOLLOUT: "
    "rx_queue.enqueue(RxOps::CreditUpdate)). False: Firecracker sends one only once the guest's view of free "
    "space falls below host_credit_threshold_bytes (csm/connection.rs notify -> peer_needs_credit_update)",
    "backend_rx_one_per_pass": "code: Firecracker 2020-26 (before PR #6041, July 2026): the muxer keeps a connection in "
    "its RX queue while it has pending RX (unix/muxer.rs recv_pkt), but the connection's recv_pkt removes its Rw "
    "indication with its one read() into one RX buffer (csm/connection.rs), and only the muxer's next epoll_wait of "
    "its nested epoll fd (VsockMuxer::notify) sets it again: one data packet per connection per pass of the event "
    "loop, each pass ending in an interrupt (model/backend.py). Host data that arrives during a pass is seen at the "
    "next. False: a pass drains a connection up to its credit (the order the profiles fitted before 2026-11-27, "
    "thirteenth session, were fitted with). vhost-device-vsock the same way: an EPOLLIN deregisters the stream and queues one Rw (vhu_vsock_thread.rs handle_event), thread_backend.rs recv_pkt pops the connection's key without pushing it back, process_rx_queue stops when backend_rxq is empty, and the stream is registered again at its read (vsock_conn.rs)",
    "uds_write_space_quarter": "code: a host application blocked writing to a userspace backend's Unix socket "
    "(sock_alloc_send_pskb -> sock_wait_for_wmem) is woken by unix_write_space only once unix_writable(): the skbs "
    "charged to it (sk_wmem_alloc) are a quarter of its sndbuf or less, so it wakes once the backend's reads have "
    "drained three quarters, not at the first read that frees room (net/unix/af_unix.c); the backend, the writer "
    "of a g2h stream, gets its EPOLLOUT the same way (unix_poll reports it only when unix_writable). False: woken "
    "by every read while it waits (the order the profiles fitted before 2026-11-28, eighteenth session, were "
    "fitted with)",
    "backend_epollin_needs_credit": "code: Firecracker polls a connection's host socket for EPOLLIN only while the "
    "guest has credit (VsockConnection::get_polled_evset skips IN when need_credit_update_from_peer(); the muxer's "
    "apply_conn_mutation re-arms it after every guest packet), and recv_pkt turns a pending Rw into a "
    "CREDIT_REQUEST only if credit ran out after the EPOLLIN: one Rw yields one packet, so in a stream that never "
    "happens. False (vhost-device-vsock): handle_event unregisters a readable socket and queues an Rw, recv_pkt "
    "answers a credit-less Rw with a CREDIT_REQUEST, and only a guest CREDIT_UPDATE re-registers the socket "
    "(vhu_vsock_thread.rs, vsock_conn.rs): one request per stall (model/backend.py). Userspace backends only; "
    "on in the Firecracker estimate (keyed on the backend kind before the sixteenth session)",
    "backend_one_irq_per_event": "code: Firecracker's vsock event handler processes both queues of an event and "
    "signals once (vsock/event_handler.rs: raise_irq |= process_tx / process_rx, then signal_used_queue; "
    "virtio-mmio has one interrupt line a device), so TX and RX used in one pass take one interrupt, whose "
    "vm_interrupt handles both queues; tx_work's run then carries no interrupt of its own",
    "guest_irq_preempts": "code: a device without EVENT_IDX interrupts while the guest has callbacks disabled "
    "(Firecracker before PR #5872); the hard interrupt runs on its vCPU at once (vm_interrupt: an INTERRUPT_STATUS "
    "read and an INTERRUPT_ACK write, two MMIO exits to the VMM's vCPU thread), delaying whatever runs there, and one "
    "that arrives while the previous is being handled is merged (the LAPIC's IRR holds one). False: its cost is "
    "accounted to the work item without taking CPU from anyone (the profiles fitted before 2026-11-27, thirteenth "
    "session)",
    "guest_kick_after_adds": "code: virtio_transport_send_pkt_work (net/vmw_vsock/virtio_transport.c) "
    "calls virtqueue_add_sgs for each queued packet and virtqueue_kick once after the loop, so the device "
    "is notified when the adds are done; False: notified at the run's start, the adds charged after "
    "(the simplification every profile before 2026-11-27, fifteenth session, was fitted with)",
    "guest_adds_on_vcpu": "code: virtio_transport_send_pkt() only queue_work()s send_pkt_work (guests before "
    "efcd71af38be); the kworker calls virtqueue_add_sgs when it runs, and on a PREEMPT_NONE vCPU it runs only when "
    "the sender's send() sleeps or returns (schedule() on the way to user space), so the device sees the packets "
    "then. With a switch-in cost (guest_wq_run_ns > 0) the adds already follow that charge; with none (the "
    "Firecracker estimate) a zero charge takes the vCPU first. False (every estimate and shipped profile): the adds "
    "are visible when the work is queued, even while the sender keeps the vCPU - a simplification kept because "
    "the Firecracker splits refitted with the flag predicted their held-out rows worse (findings, \"tx_lock and "
    "the kworker's adds, tried\", 2026-11-28)",
    "guest_tx_lock": "code: virtio_transport_send_pkt_work and virtio_transport_tx_work "
    "(net/vmw_vsock/virtio_transport.c, every kernel since 4.8) each run under mutex_lock(&vsock->tx_lock): "
    "the adds and the kick, the virtqueue_get_buf loop and its frees; the fast path (efcd71af38be) only "
    "mutex_trylock()s it. A waiter whose owner runs on another CPU spins (mutex_optimistic_spin, "
    "CONFIG_MUTEX_SPIN_ON_OWNER, default y on SMP), so at two vCPUs the one that comes second burns its vCPU "
    "until the other is done; on one vCPU the two never overlap (one worker pool, PREEMPT_NONE). False (every "
    "estimate and shipped profile): no lock, the two may overlap on two vCPUs; on the Firecracker rows the "
    "spins are rare (22 in 7.5 ms of a 1 KiB g2h stream at two vCPUs) and the refit with both flags was "
    "worse held out (findings, \"tx_lock and the kworker's adds, tried\", 2026-11-28)",
    "guest_tx_fast_path": "code: efcd71af38be (vsock/virtio: avoid queuing packets when intermediate queue is empty, "
    "2024) lets virtio_transport_send_pkt() add to the TX ring in the sender's context; older guests always go "
    "through send_pkt_work (set false for them in vsockbench.kernels)",
}
