"""Socket creation for the measurement harness: AF_VSOCK, AF_UNIX and TCP.

Every socket gets a timeout.  Data sockets use *kernel* timeouts
(SO_RCVTIMEO/SO_SNDTIMEO) and stay in blocking mode: CPython implements
``settimeout()`` by calling poll() before every send/recv (``sock_call_ex`` in
Modules/socketmodule.c), which would add a syscall to each ping-pong.  With a
kernel timeout a stalled peer makes recv()/send() fail with EAGAIN instead.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass

from ..errors import InputError

__all__ = [
    "TRANSPORTS",
    "VMADDR_CID_ANY",
    "VMADDR_CID_LOCAL",
    "VMADDR_PORT_ANY",
    "Endpoint",
    "MeasureError",
    "TransportUnavailable",
    "connect",
    "describe_oserror",
    "listen",
    "set_kernel_timeouts",
    "set_timeval_option",
]

TRANSPORTS = ("vsock", "unix", "tcp")
# include/uapi/linux/vm_sockets.h
VMADDR_CID_ANY = 0xFFFFFFFF
VMADDR_PORT_ANY = 0xFFFFFFFF
VMADDR_CID_LOCAL = 1
# SO_VM_SOCKETS_CONNECT_TIMEOUT(_OLD): a struct timeval of native longs; Python does not name it.
SO_VM_SOCKETS_CONNECT_TIMEOUT = 6
# Errnos with which a kernel says "this address family / device / CID is not here".
_UNAVAILABLE = {
    errno.EAFNOSUPPORT,
    errno.ENODEV,
    errno.EADDRNOTAVAIL,
    errno.ENETUNREACH,
    errno.EPROTONOSUPPORT,
    errno.ESOCKTNOSUPPORT,
}


class MeasureError(InputError):
    """A measurement could not run or was cut short (one-line message).

    A subclass of InputError so that the CLI maps it to exit status 2.
    """


class TransportUnavailable(MeasureError):
    """The kernel does not offer the requested transport (e.g. no vsock device)."""


@dataclass(frozen=True)
class Endpoint:
    """Where a server listens / a client connects.

    ``port`` is the TCP or vsock port (0 or VMADDR_PORT_ANY = any free port),
    ``cid`` the vsock CID to bind (server) or reach (client), ``bind_cid`` the
    client's own CID bound before connect (the RFC's way to pick a device),
    ``path`` the AF_UNIX socket path.
    """

    transport: str
    host: str = "127.0.0.1"
    port: int = 0
    cid: int = VMADDR_CID_ANY
    bind_cid: int | None = None
    path: str = ""

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise InputError(
                f"--transport: unknown transport {self.transport!r}; expected one of {', '.join(TRANSPORTS)}"
            )
        if self.transport == "unix" and not self.path:
            raise InputError("--path: an AF_UNIX socket path is required for --transport unix")

    def describe(self) -> str:
        if self.transport == "unix":
            return f"unix:{self.path}"
        if self.transport == "tcp":
            return f"tcp:{self.host}:{self.port}"
        bind = "" if self.bind_cid is None else f" (bound to CID {self.bind_cid})"
        return f"vsock:{_cid_name(self.cid)}:{_port_name(self.port)}{bind}"


def _cid_name(cid: int) -> str:
    return "ANY" if cid == VMADDR_CID_ANY else str(cid)


def _port_name(port: int) -> str:
    return "ANY" if port in (VMADDR_PORT_ANY, -1) else str(port)


def describe_oserror(exc: BaseException) -> str:
    """A short, human name for a socket failure (used in messages and notes)."""
    if isinstance(exc, (socket.timeout, TimeoutError, BlockingIOError)) or getattr(
        exc, "errno", None
    ) in (errno.EAGAIN, errno.ETIMEDOUT):
        return "timed out (peer stalled or gone)"
    if isinstance(exc, EOFError):
        return str(exc) or "peer closed the connection"
    code = getattr(exc, "errno", None)
    if code in (errno.ECONNRESET, errno.EPIPE):
        return f"connection reset by peer ({errno.errorcode[code]})"
    if code is not None:
        return f"{errno.errorcode.get(code, code)}: {os.strerror(code)}"
    return str(exc)


def _family(transport: str) -> int:
    if transport == "unix":
        return socket.AF_UNIX
    if transport == "tcp":
        return socket.AF_INET
    fam = getattr(socket, "AF_VSOCK", None)
    if fam is None:
        raise TransportUnavailable(
            "--transport vsock: this Python/OS has no AF_VSOCK (socket.AF_VSOCK missing); "
            "expected Linux with vsock support"
        )
    return fam


def _new_socket(ep: Endpoint) -> socket.socket:
    fam = _family(ep.transport)
    try:
        sock = socket.socket(fam, socket.SOCK_STREAM)
    except OSError as exc:
        if ep.transport == "vsock" and exc.errno in _UNAVAILABLE:
            raise TransportUnavailable(
                f"--transport vsock: the kernel does not offer AF_VSOCK ({describe_oserror(exc)}); "
                "expected a vsock transport module (vmw_vsock_virtio_transport, vhost_vsock or vsock_loopback)"
            ) from None
        raise MeasureError(f"{ep.describe()}: cannot create socket: {describe_oserror(exc)}") from None
    if ep.transport == "tcp":
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _vsock_unavailable(ep: Endpoint, what: str, exc: OSError) -> TransportUnavailable:
    hint = ""
    if VMADDR_CID_LOCAL in (ep.cid, ep.bind_cid):
        hint = " (CID 1 needs the vsock_loopback module)"
    elif exc.errno == errno.ENODEV:  # vsock_assign_transport(): no transport serves that CID
        hint = " for that CID (a guest reaches the host, CID 2; a host reaches guests through vhost_vsock)"
    return TransportUnavailable(
        f"{ep.describe()}: {what}: vsock transport not available here{hint}: {describe_oserror(exc)}"
    )


_LIBC = None


def _libc_setsockopt(fd: int, level: int, opt: int, value: bytes) -> bool:
    """libc's setsockopt(2) on ``fd``; False when it fails or libc cannot be loaded."""
    global _LIBC
    try:
        import ctypes

        if _LIBC is None:
            _LIBC = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(value, len(value))
        return _LIBC.setsockopt(fd, level, opt, buf, ctypes.c_uint32(len(value))) == 0
    except (OSError, AttributeError, TypeError):
        return False


def set_timeval_option(sock: socket.socket, level: int, opt: int, seconds: float) -> bool:
    """Set a ``struct timeval`` socket option; True if the kernel took it (best effort).

    CPython's setsockopt() on an AF_VSOCK socket takes only an int, which it passes as a
    64-bit value (socketmodule.c), so bytes raise TypeError and an int is EINVAL for a
    timeval option; such a socket is set through libc's setsockopt() on its fd instead.
    """
    sec = int(seconds)
    tv = struct.pack("ll", sec, int((seconds - sec) * 1e6))
    try:
        sock.setsockopt(level, opt, tv)
        return True
    except TypeError:
        return _libc_setsockopt(sock.fileno(), level, opt, tv)
    except OSError:
        return False


def set_kernel_timeouts(sock: socket.socket, seconds: float) -> None:
    """Blocking mode plus SO_RCVTIMEO/SO_SNDTIMEO: a stalled peer fails with EAGAIN.

    If the kernel does not take them, CPython's own timeout (a poll() per call, see the
    module docstring) is the fallback: slower, but a stalled peer still cannot hang the run.
    """
    sock.settimeout(None)
    ok = set_timeval_option(sock, socket.SOL_SOCKET, socket.SO_RCVTIMEO, seconds)
    ok = set_timeval_option(sock, socket.SOL_SOCKET, socket.SO_SNDTIMEO, seconds) and ok
    if not ok:
        sock.settimeout(seconds)


def listen(ep: Endpoint, timeout: float, backlog: int = 128) -> tuple[socket.socket, Endpoint]:
    """Bind and listen; returns the socket and the endpoint with the real port."""
    sock = _new_socket(ep)
    try:
        if ep.transport == "unix":
            if os.path.exists(ep.path) and _is_stale_unix(ep.path):
                os.unlink(ep.path)
            addr: object = ep.path
        elif ep.transport == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            addr = (ep.host, ep.port)
        else:
            addr = (ep.cid, VMADDR_PORT_ANY if ep.port in (0, -1) else ep.port)
        try:
            sock.bind(addr)
        except socket.gaierror as exc:
            raise _unresolved(ep, exc) from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise MeasureError(
                    f"{ep.describe()}: address/port already in use; expected a free port (or stop the other server)"
                ) from None
            if ep.transport == "vsock" and exc.errno in _UNAVAILABLE:
                raise _vsock_unavailable(ep, "bind", exc) from None
            raise MeasureError(f"{ep.describe()}: cannot bind: {describe_oserror(exc)}") from None
        sock.listen(backlog)
        sock.settimeout(timeout)  # accept() only: the poll() cost does not matter here
        if ep.transport == "unix":
            real = ep
        else:
            name = sock.getsockname()
            real = Endpoint(ep.transport, ep.host, int(name[1]), ep.cid, ep.bind_cid, ep.path)
        return sock, real
    except BaseException:
        sock.close()
        raise


def _unresolved(ep: Endpoint, exc: socket.gaierror) -> MeasureError:
    return MeasureError(f"--host: cannot resolve host name {ep.host!r} ({exc.strerror or exc}); "
                        "expected an IP address or a host name this machine can resolve")


def _is_stale_unix(path: str) -> bool:
    """True when a socket file exists but nobody listens on it (safe to remove)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return False


def connect(ep: Endpoint, timeout: float) -> socket.socket:
    """Connect to a server; clear MeasureError on refusal, timeout or missing transport."""
    sock = _new_socket(ep)
    try:
        if ep.transport == "vsock":
            if ep.bind_cid is not None:
                try:
                    # The RFC's device selection: bind(fd, cid, VMADDR_PORT_ANY) before connect.
                    sock.bind((ep.bind_cid, VMADDR_PORT_ANY))
                except OSError as exc:
                    if exc.errno in _UNAVAILABLE:
                        raise _vsock_unavailable(ep, f"bind to own CID {ep.bind_cid}", exc) from None
                    raise MeasureError(
                        f"{ep.describe()}: cannot bind own CID {ep.bind_cid}: {describe_oserror(exc)}"
                    ) from None
            # af_vsock.c: vsock_connect() gives up after vsk->connect_timeout (default 2 s), also
            # in the non-blocking connect settimeout() makes, not after SO_SNDTIMEO.  Best effort:
            # without it the kernel's default cuts a longer --timeout short, with a clear error.
            set_timeval_option(sock, socket.AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, timeout)
            addr: object = (ep.cid, ep.port)
        elif ep.transport == "unix":
            addr = ep.path
        else:
            addr = (ep.host, ep.port)
        sock.settimeout(timeout)
        try:
            sock.connect(addr)
        except (ConnectionRefusedError, FileNotFoundError):
            raise MeasureError(
                f"{ep.describe()}: connection refused; expected a running `vsockbench measure server` there"
            ) from None
        except TimeoutError:
            raise MeasureError(f"{ep.describe()}: connect timed out after {timeout:g} s") from None
        except socket.gaierror as exc:  # its errno is an EAI_* code, not an errno: os.strerror cannot name it
            raise _unresolved(ep, exc) from None
        except OSError as exc:
            if ep.transport == "vsock" and exc.errno in _UNAVAILABLE:
                raise _vsock_unavailable(ep, f"cannot connect to vsock CID {_cid_name(ep.cid)} port "
                                         f"{_port_name(ep.port)}", exc) from None
            if exc.errno == errno.ECONNRESET:
                # vsock answers a REQUEST to a port nobody listens on with RST (ECONNRESET).
                raise MeasureError(
                    f"{ep.describe()}: connection refused (reset during connect); "
                    "expected a running `vsockbench measure server` there"
                ) from None
            raise MeasureError(f"{ep.describe()}: cannot connect: {describe_oserror(exc)}") from None
        set_kernel_timeouts(sock, timeout)
        return sock
    except BaseException:
        sock.close()
        raise
