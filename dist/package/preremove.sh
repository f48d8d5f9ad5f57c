#!/bin/sh
# dockroot's .deb prerm and .rpm %preun: disable the mark-good unit when
# the package is removed, not when it is upgraded (deb: "upgrade" and
# friends; rpm: $1 is the number of versions left, 1 on upgrade).
case "$1" in
upgrade | failed-upgrade | deconfigure | 1) ;;
*)
	if command -v systemctl >/dev/null 2>&1; then
		systemctl disable dockroot-mark-good.service >/dev/null 2>&1 || :
	fi
	;;
esac
exit 0
