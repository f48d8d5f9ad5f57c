#!/bin/sh
# dockroot's .deb postinst and .rpm %post: enable the unit that marks a
# booted image as good (boot counting). It does nothing on a system
# dockroot did not boot (ConditionPathExists=/run/dockroot/boot.json), so
# enabling it is safe everywhere; `systemctl enable` works without a
# running systemd, e.g. in a Dockerfile's RUN.
if command -v systemctl >/dev/null 2>&1; then
	systemctl enable dockroot-mark-good.service >/dev/null 2>&1 || :
fi
exit 0
