#!/bin/bash
# dracut module "dockroot" (build half): puts dockroot-init, its
# configuration and dockroot-prepare.service (the run half, shared with
# mkinitcpio's systemd image: /usr/lib/systemd/system/dockroot-prepare.service,
# from dist/systemd) into the initramfs dracut builds. Installed as
# /usr/lib/dracut/modules.d/90dockroot/ by `make install`; added with
# `dracut --add dockroot` or add_dracutmodules+=" dockroot " in
# /etc/dracut.conf.d/.

# The same path inside the initramfs as on the system: /usr/lib, not a
# bin directory, because it is not a command to run by hand (outside an
# initramfs it refuses to run).
dockroot_init=/usr/lib/dockroot/dockroot-init

# called by dracut
check() {
    require_binaries "$dockroot_init" || return 1
    [[ -e $dracutsysrootdir$systemdsystemunitdir/dockroot-prepare.service ]] || {
        dfatal "dockroot: $systemdsystemunitdir/dockroot-prepare.service is missing; reinstall dockroot (make install)"
        return 1
    }
    # 255: only when asked for (--add dockroot, add_dracutmodules), never
    # by --no-hostonly's "everything that can be included".
    return 255
}

# called by dracut
depends() {
    # systemd: the run half is a unit ordered against sysroot.mount,
    # which systemd-fstab-generator makes from root= and rootflags=.
    # btrfs: the module, and udev's `btrfs device ready` for
    # multi-device filesystems.
    echo systemd btrfs
    return 0
}

# called by dracut
install() {
    inst_binary "$dockroot_init"
    inst_simple "$systemdsystemunitdir/dockroot-prepare.service"
    # The baked configuration: docker_image= and friends when the kernel
    # command line does not give them (the ancestor's file included).
    local f
    for f in /etc/dockroot.json /etc/docker-btrfs.json; do
        [[ -e $dracutsysrootdir$f ]] && inst_simple "$f"
    done
    # Enabled as a requirement of sysroot.mount rather than a want of a
    # target: when the unit fails, systemd does not mount root= (the
    # mount's job fails with "dependency") while the unit's OnFailure=
    # takes the boot to the emergency target; and the unit runs exactly
    # when the root is mounted from root=.
    mkdir -p "$initdir$systemdsystemunitdir/sysroot.mount.requires"
    ln_r "$systemdsystemunitdir/dockroot-prepare.service" \
        "$systemdsystemunitdir/sysroot.mount.requires/dockroot-prepare.service"
}
