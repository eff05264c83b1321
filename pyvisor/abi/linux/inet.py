"""Internet protocol constants and structs (data only).

From <linux/in.h>, <linux/in6.h>, <linux/tcp.h>, <linux/udp.h>, <linux/icmp.h>,
<linux/icmpv6.h>, <net/tcp_states.h>, <linux/sockios.h>, <linux/if.h>.
"""

from __future__ import annotations

import struct

# Protocols.  From <linux/in.h>.
IPPROTO_IP = 0
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPPROTO_ICMPV6 = 58
IPPROTO_RAW = 255

# Option levels.  From <linux/socket.h>.
SOL_IP = 0
SOL_TCP = 6
SOL_UDP = 17
SOL_IPV6 = 41
SOL_ICMPV6 = 58

# IP-level options.  From <linux/in.h>.
IP_TOS = 1
IP_TTL = 2
IP_HDRINCL = 3
IP_OPTIONS = 4
IP_RECVOPTS = 6
IP_RETOPTS = 7
IP_PKTINFO = 8
IP_PKTOPTIONS = 9
IP_MTU_DISCOVER = 10
IP_RECVERR = 11
IP_RECVTTL = 12
IP_RECVTOS = 13
IP_MTU = 14
IP_FREEBIND = 15
IP_PASSSEC = 18
IP_TRANSPARENT = 19
IP_RECVORIGDSTADDR = 20
IP_MINTTL = 21
IP_NODEFRAG = 22
IP_CHECKSUM = 23
IP_BIND_ADDRESS_NO_PORT = 24
IP_RECVFRAGSIZE = 25
IP_RECVERR_RFC4884 = 26
IP_MULTICAST_IF = 32
IP_MULTICAST_TTL = 33
IP_MULTICAST_LOOP = 34
IP_ADD_MEMBERSHIP = 35
IP_DROP_MEMBERSHIP = 36
IP_MULTICAST_ALL = 49
IP_LOCAL_PORT_RANGE = 51

# IPv6-level options.  From <linux/in6.h>.
IPV6_ADDRFORM = 1
IPV6_2292PKTINFO = 2
IPV6_CHECKSUM = 7
IPV6_2292HOPLIMIT = 8
IPV6_UNICAST_HOPS = 16
IPV6_MULTICAST_IF = 17
IPV6_MULTICAST_HOPS = 18
IPV6_MULTICAST_LOOP = 19
IPV6_ADD_MEMBERSHIP = 20
IPV6_DROP_MEMBERSHIP = 21
IPV6_ROUTER_ALERT = 22
IPV6_MTU_DISCOVER = 23
IPV6_MTU = 24
IPV6_RECVERR = 25
IPV6_V6ONLY = 26
IPV6_JOIN_ANYCAST = 27
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
IPV6_RECVHOPLIMIT = 51
IPV6_HOPLIMIT = 52
IPV6_RECVTCLASS = 66
IPV6_TCLASS = 67
IPV6_AUTOFLOWLABEL = 70
IPV6_FREEBIND = 78

# TCP-level options.  From <linux/tcp.h>.
TCP_NODELAY = 1
TCP_MAXSEG = 2
TCP_CORK = 3
TCP_KEEPIDLE = 4
TCP_KEEPINTVL = 5
TCP_KEEPCNT = 6
TCP_SYNCNT = 7
TCP_LINGER2 = 8
TCP_DEFER_ACCEPT = 9
TCP_WINDOW_CLAMP = 10
TCP_INFO = 11
TCP_QUICKACK = 12
TCP_CONGESTION = 13
TCP_MD5SIG = 14
TCP_THIN_LINEAR_TIMEOUTS = 16
TCP_THIN_DUPACK = 17
TCP_USER_TIMEOUT = 18
TCP_REPAIR = 19
TCP_FASTOPEN = 23
TCP_TIMESTAMP = 24
TCP_NOTSENT_LOWAT = 25
TCP_FASTOPEN_CONNECT = 30
TCP_ULP = 31
TCP_FASTOPEN_NO_COOKIE = 34
TCP_INQ = 36

MAX_TCP_KEEPIDLE = 32767
MAX_TCP_KEEPINTVL = 32767
MAX_TCP_KEEPCNT = 127
MAX_TCP_SYNCNT = 127
TCP_MSS_DEFAULT = 536

# UDP-level options.  From <linux/udp.h>.
UDP_CORK = 1
UDP_ENCAP = 100
UDP_NO_CHECK6_TX = 101
UDP_NO_CHECK6_RX = 102
UDP_SEGMENT = 103
UDP_GRO = 104

# TCP states (sk_state).  From <net/tcp_states.h>.
TCP_ESTABLISHED = 1
TCP_SYN_SENT = 2
TCP_SYN_RECV = 3
TCP_FIN_WAIT1 = 4
TCP_FIN_WAIT2 = 5
TCP_TIME_WAIT = 6
TCP_CLOSE = 7
TCP_CLOSE_WAIT = 8
TCP_LAST_ACK = 9
TCP_LISTEN = 10
TCP_CLOSING = 11
TCP_NEW_SYN_RECV = 12

# ICMP.  From <linux/icmp.h>, <linux/icmpv6.h>.
ICMP_ECHOREPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_ECHO = 8
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129
ICMP_FILTER = 1

# Socket ioctls.  From <linux/sockios.h>.
SIOCGIFNAME = 0x8910
SIOCGIFCONF = 0x8912
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFADDR = 0x8915
SIOCGIFDSTADDR = 0x8917
SIOCGIFBRDADDR = 0x8919
SIOCGIFNETMASK = 0x891B
SIOCGIFMETRIC = 0x891D
SIOCGIFMTU = 0x8921
SIOCGIFHWADDR = 0x8927
SIOCGIFINDEX = 0x8933
SIOCGIFTXQLEN = 0x8942
SIOCGSTAMP = 0x8906
SIOCGSTAMPNS = 0x8907

# Interface flags.  From <linux/if.h>.
IFF_UP = 0x1
IFF_BROADCAST = 0x2
IFF_LOOPBACK = 0x8
IFF_RUNNING = 0x40
IFF_MULTICAST = 0x1000
IFF_LOWER_UP = 0x10000
IFNAMSIZ = 16
IFREQ_SIZE = 40              # struct ifreq: name[16] + a 24-byte union
IFCONF = struct.Struct("<i4xQ")   # struct ifconf: ifc_len, ifc_buf (pointer)
ARPHRD_LOOPBACK = 772
ARPHRD_ETHER = 1

# Addresses.  From <linux/in.h>, <linux/in6.h>.
SOCKADDR_IN = struct.Struct("<HH4s8x")         # family, port (network order), addr: 16 bytes
SOCKADDR_IN6 = struct.Struct("<HH I16sI")      # family, port, flowinfo, addr, scope_id: 28
SIN6_LEN_RFC2133 = 24                          # the shortest sockaddr_in6 bind accepts
INADDR_ANY = b"\0\0\0\0"
INADDR_BROADCAST = b"\xff\xff\xff\xff"
IN6ADDR_ANY = b"\0" * 16
IN6ADDR_LOOPBACK = b"\0" * 15 + b"\1"
V4MAPPED_PREFIX = b"\0" * 10 + b"\xff\xff"

# Control messages.  From <linux/in.h>, <asm-generic/socket.h>.
IN_PKTINFO = struct.Struct("<i4s4s")           # ifindex, spec_dst, addr
IN6_PKTINFO = struct.Struct("<16sI")           # addr, ifindex
SCM_TIMESTAMP = 29                             # == SO_TIMESTAMP
SCM_TIMESTAMPNS = 35

# struct tcp_info as of Linux 6.1 (232 bytes): the fields pyvisor fills.
TCP_INFO_STRUCT = struct.Struct("<8B24I4Q6I4Q2I2Q4I")
assert TCP_INFO_STRUCT.size == 232

# Ports.  net.ipv4.ip_local_port_range and ip_unprivileged_port_start defaults.
EPHEMERAL_LOW = 32768
EPHEMERAL_HIGH = 60999
PROT_SOCK = 1024

# IP limits.
IP_MAXPACKET = 65535
UDP_MAX_V4 = 65507            # 65535 - 20 (IPv4 header) - 8 (UDP header)
UDP_MAX_V6 = 65527            # 65535 - 8 (the IPv6 payload length excludes its header)
LOOPBACK_MTU = 65536
