#!/bin/sh
# dockyard sandbox entrypoint (PID 1 is tini): make the container able to run its own Docker engine, install
# the login key given at create time, then run sshd in the foreground.
set -eu

# docker-in-docker without --privileged: /sys and the cgroup hierarchies are mounted read-only by default.
# A plain remount of a cgroup v1 hierarchy says "busy"; a bind remount changes only this mount point's flag.
rw() {
	mount -o remount,rw "$1" 2>/dev/null || mount -o remount,bind,rw "$1" 2>/dev/null \
		|| echo "sandbox: cannot remount $1 read-write" >&2
}
rw /sys
if mountpoint -q /sys/fs/cgroup; then
	rw /sys/fs/cgroup
fi
for dir in /sys/fs/cgroup/*; do
	if [ -d "$dir" ] && [ ! -L "$dir" ] && mountpoint -q "$dir"; then
		rw "$dir"
	fi
done
# cgroup v2: move every process out of the root cgroup so the inner engine can enable controllers (as
# docker:dind does).
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	mkdir -p /sys/fs/cgroup/init
	xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
	sed -e 's/ / +/g' -e 's/^/+/' < /sys/fs/cgroup/cgroup.controllers \
		> /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || :
fi

# The login user: `dockyard` is in the image; another name from the playbook is created like it.
user="${DOCKYARD_USER:-dockyard}"
if ! id "$user" >/dev/null 2>&1; then
	useradd --create-home --shell /bin/bash --user-group "$user"
	printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$user" > "/etc/sudoers.d/90-$user"
	chmod 0440 "/etc/sudoers.d/90-$user"
fi
home=$(getent passwd "$user" | cut -d: -f6)
if [ -n "${DOCKYARD_AUTHORIZED_KEY:-}" ]; then
	install -d -m 0700 -o "$user" -g "$(id -gn "$user")" "$home/.ssh"
	printf '%s\n' "$DOCKYARD_AUTHORIZED_KEY" > "$home/.ssh/authorized_keys"
	chown "$user:$(id -gn "$user")" "$home/.ssh/authorized_keys"
	chmod 0600 "$home/.ssh/authorized_keys"
else
	echo "sandbox: DOCKYARD_AUTHORIZED_KEY is not set: nobody can log in" >&2
fi
unset DOCKYARD_AUTHORIZED_KEY

# Host keys are made on first start (never baked into the image), and kept across restarts.
ssh-keygen -A >/dev/null
mkdir -p /run/sshd

# A VM starts its enabled services when it boots; there is no init system here, so after a restart of the
# sandbox start the engine `setup` installed and enabled (its data is on the /var/lib/docker volume).
if ls /etc/rc2.d/S*docker >/dev/null 2>&1 && [ -x /etc/init.d/docker ]; then
	/etc/init.d/docker start >/dev/null 2>&1 || echo "sandbox: the docker service did not start" >&2
fi

exec /usr/sbin/sshd -D -e
