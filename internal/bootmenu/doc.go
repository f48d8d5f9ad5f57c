// Package bootmenu turns the kernels `dockroot install` put in a boot
// directory into boot-menu entries, and renders those entries for GRUB,
// rEFInd and systemd-boot, and writes them (Generate) without ever
// replacing a file dockroot did not write. The host CLI calls it:
// `dockroot menu`, which records how it wrote each menu (WriteMenuRecord),
// `dockroot update` and `dockroot watch`, which write it again the same way
// (ReadMenuRecords), and `dockroot install` for the installed layout. The
// boot binary never does.
//
// Entries are data: Entries builds them from the installed kernels and the
// kernel parameters with a pure function, and each bootloader has one
// renderer (RenderGRUB, RenderRefind, RenderBLS) that only quotes and
// formats. Quoting follows what each loader does with the text:
//
//   - the kernel splits its command line at spaces outside double quotes
//     and strips the quotes around a value (kernel/params.c next_arg), with
//     no escape character, so a parameter cannot hold a double quote;
//   - GRUB's `linux` command re-joins its arguments with spaces, putting an
//     argument holding a space in double quotes and a backslash before every
//     \ ' and " (grub-core/lib/cmdline.c), which the kernel keeps literally:
//     parameters for GRUB therefore cannot hold \ or ' either;
//   - rEFInd's config reader ends a token at a space, '=' or ',' outside
//     double quotes and reads "" inside quotes as one '"' (config.c
//     ReadTokenLine); its titles and options are always quoted;
//   - Boot Loader Specification files take one "key value" per line, the
//     value verbatim to the end of the line, no quoting at all.
//
// # The installed layout
//
// `dockroot install REF --boot-dir DIR` writes one directory per image tag:
//
//	DIR/<slug>/vmlinuz        the image's kernel
//	DIR/<slug>/initramfs.img  the initramfs built from the image's own modules
//	DIR/<slug>/entry.json     written last, atomically: {"schema": 1,
//	                          "ref": "desk:stable", "image_id": "sha256:…",
//	                          "kernel_version": "6.1.0-28-amd64",
//	                          "kernel": "vmlinuz", "initrd": "initramfs.img",
//	                          "installed": "2025-01-02T03:04:05Z"}
//
// <slug> is Slug(ref): the familiar reference lower-cased with '/' → '_'
// and ':' or '@' → '-' ("ghcr.io/me/desk:1.0" → "ghcr.io_me_desk-1.0"),
// safe on FAT (an ESP) and as a BLS entry id. A directory without
// entry.json is not dockroot's (or an install that did not finish) and is
// ignored. WriteInstalled, ReadInstalled and ReadEntry are the only code
// that reads or writes entry.json.
//
// # The previous-layer entry
//
// Every menu ends with an entry that boots the rw layer the previous boot
// rotated to NAME.prev.1, as it was left, without making a fresh layer from
// the image. It carries the kernel parameter
//
//	dockroot.layer=previous
//
// next to the usual rootflags=subvol=NAME (so the init knows the layer
// family); see PreviousLayerParam.
//
// It is host-only and must not import the boot (hook) or the image stores'
// internals; dockroot-init never links it.
package bootmenu
