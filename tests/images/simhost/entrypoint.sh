#!/bin/sh
# Make the container behave like a fresh VM that can run its own Docker engine, then run sshd.
# The authorized key comes from $SIMHOST_AUTHORIZED_KEY or a file mounted at /run/simhost/authorized_keys;
# it is installed for root and for the sudo user `deploy`.
set -eu

# docker-in-docker without --privileged: /sys and the cgroup tree are mounted read-only by default.
mount -o remount,rw /sys 2>/dev/null || echo "simhost: warning: cannot remount /sys read-write" >&2
if [ -d /sys/fs/cgroup ]; then
  mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
  # a plain remount of a cgroup v1 hierarchy says "busy"; a bind remount changes only this mount's flag
  for d in /sys/fs/cgroup/*; do
    if mountpoint -q "$d" 2>/dev/null; then
      mount -o remount,rw "$d" 2>/dev/null || mount -o remount,bind,rw "$d" 2>/dev/null || true
    fi
  done
fi

key="${SIMHOST_AUTHORIZED_KEY:-}"
if [ -z "$key" ] && [ -r /run/simhost/authorized_keys ]; then key=$(cat /run/simhost/authorized_keys); fi
if [ -z "$key" ]; then
  echo "simhost: no authorized key (set SIMHOST_AUTHORIZED_KEY or mount /run/simhost/authorized_keys)" >&2
  exit 2
fi
for home_user in /root:root /home/deploy:deploy; do
  home=${home_user%%:*}; user=${home_user#*:}
  install -d -m 0700 -o "$user" -g "$user" "$home/.ssh"
  printf '%s\n' "$key" > "$home/.ssh/authorized_keys"
  chown "$user:$user" "$home/.ssh/authorized_keys"
  chmod 0600 "$home/.ssh/authorized_keys"
done
unset SIMHOST_AUTHORIZED_KEY

# every sim host gets its own host keys (a rebuilt host must look like a changed host to known_hosts)
ssh-keygen -A >/dev/null
mkdir -p /run/sshd
exec /usr/sbin/sshd -D -e
