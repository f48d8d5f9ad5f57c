// Package config turns the kernel command line and the config files baked
// into the initramfs into one typed, validated Config.
//
// Who calls it:
//   - dockroot-init (PID 1 in the initramfs, and the hook mode inside
//     another initramfs) calls Load with /proc/cmdline and the initramfs
//     root at boot, logs each of Config.Warnings and each of Problems(err)
//     as one line, and follows Config.OnFail when the error is not nil
//     (Load always returns a usable Config for that);
//   - the host CLI calls CheckFile on the JSON that `dockroot initramfs
//     --config` bakes as /etc/dockroot.json, CheckDockerBtrfsFile on the
//     ancestor's /etc/docker-btrfs.json it bakes too, and ParseDeviceSpec
//     on device names;
//   - Options lists every parameter; a test holds the README's table to it.
//
// Where values come from, per key, first match wins:
//
//  1. the kernel command line, parsed by ParseCmdline with the kernel's own
//     rules (lib/cmdline.c next_arg; the last repeated key wins);
//  2. /etc/dockroot.json, fields named after the parameters (see Options);
//  3. the ancestor's /etc/docker-btrfs.json, {"docker_image", "docker_tag"};
//  4. the defaults.
//
// Config.Sources records which one supplied each key, for the boot log.
//
// The package is pure: it reads files only through an fs.FS, does no other
// I/O and never panics on any input (FuzzParseCmdline, FuzzLoadConfigFile),
// so it is safe in PID 1 and builds into the static init binary.
//
// It imports only internal/layout and internal/machineid (the
// toplayer_path= placeholders): both binaries link it, and it knows nothing
// of the boot, the stores or the host tool.
package config
