#!/bin/sh
# PID 1 of the pyl2tp Linux client VM (initramfs, no systemd). Written by build.py as /init.
#
# Kernel command line (set by vm.py):
#   pyl2tp.ip=198.18.1.2/24   address of eth0 (the tap's far end)
#   pyl2tp.gw=198.18.1.1      the host side of the tap; default route
#   pyl2tp.timeout=SECS       limit for /sb/in/cmd.sh
# 9p shares: tag "vmin" -> /sb/in (read-only: cmd.sh, root/ = files copied onto /,
# flags/ = files the host creates while the VM runs), tag "vmout" -> /sb/out (results).
# Console markers the host reads: "PYL2TP-VM-READY ..." and "PYL2TP-VM-EXIT rc=N".
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH HOME=/root TERM=dumb LANG=C.UTF-8

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec 0</dev/console 1>/dev/console 2>&1
mkdir -p /dev/pts /dev/shm /run /tmp /var/log /var/tmp /sb/in /sb/out
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
ln -sf /proc/self/fd /dev/fd
mkdir -p /run/lock /run/xl2tpd /run/pppd /run/strongswan
chmod 1777 /tmp /var/tmp
hostname linuxvm

# param NAME DEFAULT: the value of pyl2tp.NAME= on the kernel command line
param() {
    v=$(tr ' ' '\n' < /proc/cmdline | sed -n "s/^pyl2tp\.$1=//p" | tail -n 1)
    echo "${v:-$2}"
}
IP=$(param ip 198.18.1.2/24)
GW=$(param gw 198.18.1.1)
LIMIT=$(param timeout 120)

# The boot set only; everything else shipped is autoloaded by the kernel on demand
# (loading every module at boot costs seconds of crypto self-tests under TCG).
modprobe -a $(cat /etc/pyl2tp-vm/modules.boot) 2>/tmp/modprobe.err \
    || { echo "pyl2tp-vm: modprobe failed:"; cat /tmp/modprobe.err; }

# xl2tpd and pppd log through syslog(3)
busybox syslogd -O /var/log/messages || echo "pyl2tp-vm: syslogd did not start"

ip link set lo up
# IPv4 only on the wire: no router solicitations or MLD reports in captures
echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6 2>/dev/null
if ! { ip link set eth0 up && ip addr add "$IP" dev eth0 && ip route add default via "$GW"; }; then
    echo "pyl2tp-vm: network setup failed"
fi

# Defaults a test's files may replace: charon logs to a file (no syslog of its own here).
echo linuxvm > /etc/hostname
printf '127.0.0.1 localhost\n127.0.1.1 linuxvm\n' > /etc/hosts
: > /etc/resolv.conf
mkdir -p /etc/strongswan.d
cat > /etc/strongswan.d/charon-logging.conf <<'EOF'
charon {
    filelog {
        charon {
            path = /var/log/charon.log
            time_format = %b %e %T
            ike_name = yes
            append = no
            default = 2
            flush_line = yes
        }
    }
    syslog {
        daemon {
            default = -1
        }
    }
}
EOF

mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none vmin /sb/in \
    || echo "pyl2tp-vm: no /sb/in share"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none vmout /sb/out \
    || echo "pyl2tp-vm: no /sb/out share"
OUT=/sb/out
# Config files from the host keep their modes (vm.py makes secrets 0600).
[ -d /sb/in/root ] && cp -R --preserve=mode /sb/in/root/. /

read -r up _ < /proc/uptime
echo "PYL2TP-VM-READY uptime=${up}s kernel=$(uname -r) ip=$IP"

cd /sb/in || cd /
# To a file, not a pipe: daemons that cmd.sh leaves running cannot hold us up.
timeout -k 5 "$LIMIT" sh /sb/in/cmd.sh > "$OUT/cmd.log" 2>&1 < /dev/null
rc=$?
cd /
[ "$rc" = 124 ] && echo "pyl2tp-vm: cmd.sh timed out after ${LIMIT}s"
echo "----- cmd.sh output (rc=$rc), last 100 lines -----"
tail -n 100 "$OUT/cmd.log"
echo "----- end -----"

for c in "uname -a" "lsmod" "ip -d addr" "ip route" "ip xfrm state" "ip xfrm policy" \
         "ip l2tp show tunnel" "ip l2tp show session" "ps -ef"; do
    echo "===== $c"
    $c 2>&1
done > "$OUT/state.txt"
dmesg > "$OUT/dmesg.txt" 2>&1
mkdir -p "$OUT/varlog" && cp -R /var/log/. "$OUT/varlog/" 2>/dev/null
echo "$rc" > "$OUT/exit-status"
sync
echo "PYL2TP-VM-EXIT rc=$rc"
echo o > /proc/sysrq-trigger
sleep 10
