package matrix

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/bootstate"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// absent is a filesystem label no device on the test machine carries.
const absent = "dockroot-matrix-absent"

// Cases is the bad-input matrix. Each case is data: the cmdline appended to
// baseCmdline, the disk mutations, the outcome.
func Cases() []Case {
	shell, reboot := config.OnFailShell, config.OnFail("reboot")
	return []Case{
		// --- control ---
		{Name: "normal boot", Want: Outcome{Booted: true, Image: "desk:1",
			Console: `dockroot: boot steps took \d+ ms`,
			Checks:  []Check{rootFileIs("etc/hostname", machineHost)}}},

		// --- the image reference ---
		{Name: "unknown image", Cmdline: "docker_image=nosuch:1",
			Want: Outcome{Step: "image", Policy: shell,
				Console: `image "nosuch:1" not found in .*; tagged images: .*desk:1, desk:2.*; set docker_image= to one of them`}},
		{Name: "unknown tag", Cmdline: "docker_image=desk:9",
			Want: Outcome{Step: "image", Policy: shell,
				Console: `image "desk:9" not found .*desk:1, desk:2.*; set docker_image= to one of them`}},
		{Name: "unknown tag, onfail=previous boots the previous layer as it was left", Cmdline: "docker_image=desk:9 dockroot.onfail=previous",
			Want: Outcome{Booted: true, Fallback: layerName,
				Console: `!!! dockroot.onfail=previous: "resolve the image" failed, so this boot uses the layer docker_rwlayer AS IT WAS LEFT`}},
		{Name: "unknown tag, onfail=reboot", Cmdline: "docker_image=desk:9 dockroot.onfail=reboot",
			Want: Outcome{Step: "image", Policy: reboot,
				Console: `BOOT FAILED: resolve the image: image "desk:9" not found`}},
		{Name: "malformed ref", Cmdline: "docker_image=Desk:1",
			Want: Outcome{Step: "image", Policy: shell,
				Console: `"Desk:1": repository name must be lowercase .*; use "desk:1"`}},
		{Name: "digest mismatch", Cmdline: "docker_image={digest-repo}@sha256:" + strings.Repeat("0", 63) + "1",
			Want: Outcome{Step: "image", Policy: shell,
				Console: `image ".*/fixture/desk@sha256:0+1" not found .*fixture/desk@sha256:[0-9a-f]{64}.*; set docker_image= to one of them`}},
		{Name: "digest pin (manifest digest) boots exactly that image", Cmdline: "docker_image={digested}",
			Want: Outcome{Booted: true, Image: "desk:2", Checks: []Check{recordedImage("{desk2-id}")}}},
		{Name: "image-ID pin boots exactly that image", Cmdline: "docker_image={desk1-id}",
			Want: Outcome{Booted: true, Image: "desk:1", Checks: []Check{recordedImage("{desk1-id}")}}},
		{Name: "name@<image ID> of an image the repository tags boots exactly that image", Cmdline: "docker_image=desk@{desk2-id}",
			Want: Outcome{Booted: true, Image: "desk:2", Checks: []Check{recordedImage("{desk2-id}")}}},
		{Name: "name@<image ID> of another repository's image: refused", Cmdline: "docker_image={digest-repo}@{desk1-id}",
			Want: Outcome{Step: "image", Policy: shell,
				Console: `image ".*/fixture/desk@sha256:[0-9a-f]{64}" not found .*is neither a manifest digest Docker recorded for .*/fixture/desk nor the ID of an image .*/fixture/desk has a tag for; .*/fixture/desk holds: .*/fixture/desk@sha256:[0-9a-f]{64} -> image [0-9a-f]{12}\); tagged images: .*; set docker_image= to one of them`}},
		{Name: "image with no layers", Cmdline: "docker_image=zero:1",
			Want: Outcome{Step: "image", Policy: shell,
				Console: `image zero:1 .*FROM scratch with metadata only.*add files to it \(COPY/ADD\) or choose another image`}},

		// --- Docker's store ---
		{Name: "repositories.json missing", Disk: []Mutation{removeFile(reposJSON)},
			Want: Outcome{Step: "image", Policy: shell,
				Console: `repositories.json does not exist: no image was ever tagged in this store\); the store has no tagged images: build or pull one there first`}},
		{Name: "repositories.json corrupt", Disk: []Mutation{writeFile(reposJSON, "\x00\x01garbage", 0o600)},
			Want: Outcome{Step: "image", Policy: shell,
				Console: `repositories.json: invalid JSON .*restore it from a backup, or move it aside, restart dockerd and tag the images again`}},
		{Name: "repositories.json truncated", Disk: []Mutation{truncateFile(reposJSON)},
			Want: Outcome{Step: "image", Policy: shell,
				Console: `repositories.json: invalid JSON \(unexpected end of JSON input\).*restore it from a backup`}},
		{Name: "imagedb config missing", Disk: []Mutation{removeImageFile("desk:1", "config")},
			Want: Outcome{Step: "image", Policy: shell,
				Console: `image desk:1: .*repositories.json maps it to sha256:[0-9a-f]{64} but its config .* is missing: .*remove the tag \(docker rmi desk:1\) and pull or build the image again`}},
		{Name: "imagedb config altered", Disk: []Mutation{appendImageFile("desk:1", "config", " ")},
			Want: Outcome{Step: "image", Policy: shell,
				Console: `content hashes to sha256:[0-9a-f]{64}, not to its image ID .*remove the image \(docker rmi -f [0-9a-f]{12}\) and pull or build it again`}},
		{Name: "cache-id missing", Disk: []Mutation{removeImageFile("desk:1", "cache-id")},
			Want: Outcome{Step: "image", Policy: shell,
				Console: `image desk:1: top layer sha256:[0-9a-f]{64}: read .*/cache-id: no such file or directory .*pull or build the image again`}},
		{Name: "cache-id names a path outside the store", Disk: []Mutation{writeImageFile("desk:1", "cache-id", "../../../../etc")},
			Want: Outcome{Step: "image", Policy: shell,
				Console: `cache-id holds "../../../../etc", not a subvolume name: .*pull or build the image again`}},
		{Name: "layer subvolume missing", Disk: []Mutation{deleteImageSubvolume("desk:1")},
			Want: Outcome{Step: "image", Policy: shell,
				Console: `image desk:1: layer subvolume .*/btrfs/subvolumes/[0-9a-f]{64} \(cache-id from .*\): no such file or directory .*pull or build the image again`}},
		{Name: "docker_path wrong", Cmdline: "docker_path=var/lib/dockr",
			Want: Outcome{Step: "image", Policy: shell,
				Console: `Docker data root .*/var/lib/dockr: .*no such file or directory; and containerd root .*; and Podman graph root .*; set docker_path= to Docker's data root \(default var/lib/docker\), or containerd_path= to a system containerd's root \([^)]*\), or podman_path=`}},

		// --- the root device ---
		{Name: "root is not btrfs", Disk: []Mutation{ext4Root()},
			Want: Outcome{Step: "root-device", Policy: shell,
				Console: `root device /dev/loop\d+ \(/dev/loop\d+\) holds ext4, not btrfs: .*; check root=`}},
		{Name: "root device never appears", Cmdline: "root=LABEL=" + absent + " dockroot.timeout=1",
			Want: Outcome{Step: "root-device", Policy: shell,
				Console: `root device LABEL=` + absent + ` not found after 1s; block devices found:(.|\n)*Check root= on the kernel command line`}},
		{Name: "read-only filesystem", Disk: []Mutation{readOnly()},
			Want: Outcome{Step: "top-level", Policy: shell,
				Console: `mount the btrfs top level: mount (/dev/loop\d+) on .* \(btrfs, subvolid=5\): (permission denied|read-only file system): the device is read-only, so dockroot cannot make a fresh rw layer on it. Either it is write-protected .*blockdev --getro /dev/loop\d+.*or btrfs forced it read-only after an error \(dmesg .*btrfs check --readonly /dev/loop\d+.*add "dockroot.layer=current ro" to the kernel command line`}},
		{Name: "read-only filesystem, dockroot.layer=current without ro", Cmdline: "dockroot.layer=current", Disk: []Mutation{readOnly()},
			Want: Outcome{Step: "top-level", Policy: shell,
				Console: `the device is read-only.*dockroot.layer=current boots the existing layer without writing only when it is mounted read-only too: add "ro"`}},
		{Name: "read-only filesystem, dockroot.layer=current ro boots the layer as it was left", Cmdline: "dockroot.layer=current ro", Disk: []Mutation{readOnly()},
			Want: Outcome{Booted: true, Existing: layerName,
				Console: `the device is read-only, so the top level is mounted read-only: dockroot.layer=current with ro writes nothing to it`}},
		{Name: "disk full", Disk: []Mutation{fillDisk()},
			Want: Outcome{Step: "free-space", Policy: shell,
				Console: `has 0 B free of 512 MiB, less than the 64.0 MiB dockroot needs to create a new rw layer; nothing was changed. Free space, then boot again: remove images you no longer need \(docker image prune, docker rmi\)`}},
		{Name: "disk fills up while the top layer is copied", Cmdline: "toplayer=" + "{toplayer-dev} toplayerfstype=ext4 toplayer_path=big",
			Disk: []Mutation{bigToplayerDevice(160), leaveFree(100)},
			Want: Outcome{Step: "top-layer", Policy: shell,
				Console: `apply the top layer: .*no space left on device .*the filesystem is full: what this boot created was removed and nothing else was changed. Free space, then boot again`}},

		// --- rootflags, docker_path and other options ---
		{Name: "rootflags without subvol=", Cmdline: "rootflags=compress=zstd",
			Want: Outcome{Step: "config", Policy: shell,
				Console: `rootflags="compress=zstd" \(kernel command line\): has no subvol=NAME: .*replace rootflags=compress=zstd with "rootflags=subvol=docker_rwlayer,compress=zstd"`}},
		{Name: "subvol names the top level", Cmdline: "rootflags=subvol=/",
			Want: Outcome{Step: "config", Policy: shell,
				Console: `subvol=/ names the top level of the filesystem: .*; name a subvolume of its own outside the Docker data root, e.g. "rootflags=subvol=docker_rwlayer"`}},
		{Name: "subvol names the image subvolume", Cmdline: "rootflags=subvol={desk1-subvol}",
			Want: Outcome{Step: "config", Policy: shell,
				Console: `subvol=var/lib/docker/btrfs/subvolumes/[0-9a-f]{64} lies inside the Docker data root docker_path=var/lib/docker: .*name a subvolume of its own outside the Docker data root`}},
		{Name: "subvol inside the Docker root", Cmdline: "rootflags=subvol=var/lib/docker/rw",
			Want: Outcome{Step: "config", Policy: shell,
				Console: `subvol=var/lib/docker/rw lies inside the Docker data root .*name a subvolume of its own outside the Docker data root`}},
		{Name: "docker_path absolute", Cmdline: "docker_path=/var/lib/docker",
			Want: Outcome{Step: "config", Policy: shell,
				Console: `docker_path="/var/lib/docker" \(kernel command line\): is an absolute path.*use docker_path=var/lib/docker`}},
		{Name: "dockroot.keep not a number", Cmdline: "dockroot.keep=abc",
			Want: Outcome{Step: "config", Policy: shell,
				Console: `dockroot.keep="abc" \(kernel command line\): .*number`}},
		{Name: "config error still honours onfail=reboot", Cmdline: "dockroot.keep=abc dockroot.onfail=reboot",
			Want: Outcome{Step: "config", Policy: reboot, Console: `dockroot.keep="abc"`}},
		{Name: "rw layer name taken by the user's own subvolume", Cmdline: "rootflags=subvol=mine", Disk: []Mutation{userSubvolume("mine")},
			Want: Outcome{Step: "rw-layer", Policy: shell,
				Console: `cannot replace the rw layer mine: .*is subvolume .* that dockroot did not create .*move it away \(mv .*/mine .*/mine.mine\) or choose another rootflags=subvol= name`,
				Checks:  []Check{fileIs("mine/"+markerFile, "the user's own\n")}}},

		// --- the top layer ---
		{Name: "top-layer device missing", Cmdline: "toplayer=LABEL=" + absent + " dockroot.timeout=1",
			Want: Outcome{Step: "top-layer-source", Policy: shell,
				Console: `toplayer device LABEL=` + absent + ` not found after 1s(.|\n)*Check toplayer= on the kernel command line`}},
		{Name: "toplayer_path missing", Cmdline: "toplayer_path=nosuch",
			Want: Outcome{Step: "top-layer", Policy: shell,
				Console: `apply the top layer: .*nosuch.*no such file or directory`}},
		{Name: "top-layer symlink to outside is copied as a symlink", Disk: []Mutation{topSymlink("etc/evil", "{outside}/target")},
			Want: Outcome{Booted: true, Image: "desk:1",
				Checks: []Check{symlinkIs("etc/evil", "{outside}/target"), outsideUntouched()}}},
		{Name: "image symlinks to outside never redirect a top-layer write", Cmdline: "docker_image=" + imageEscape,
			Disk: []Mutation{topFile("etc/outside-abs/pwned", "x\n", 0o644), topFile("etc/outside-rel/pwned", "x\n", 0o644)},
			Want: Outcome{Booted: true, Image: imageEscape,
				Checks: []Check{outsideUntouched(), rootFileIs("etc/outside-abs/pwned", "x\n"), rootFileIs("etc/outside-rel/pwned", "x\n")}}},
		{Name: "etc/shadow keeps its mode and owner", Disk: []Mutation{topFileOwned("etc/shadow", "root:*:19000:0:99999:7:::\n", 0o640, 0, 42)},
			Want: Outcome{Booted: true, Image: "desk:1", Checks: []Check{rootFileMode("etc/shadow", 0o640, 0, 42)}}},
		{Name: "the rw layer's root keeps the image's mode and owner", Disk: []Mutation{chownTop(0o700, 1000, 1000)},
			Want: Outcome{Booted: true, Image: "desk:1", Checks: []Check{rootDirLikeImage("desk:1")}}},

		// --- the image's init ---
		// Found in the fresh layer before it is committed: nothing rotates.
		{Name: "image has no init", Cmdline: "docker_image=" + imageNoInit,
			Want: Outcome{Step: "top-layer", Policy: shell,
				Console: noInitConsole}},
		{Name: "image has no init, keep=0", Cmdline: "docker_image=" + imageNoInit + " dockroot.keep=0",
			Want: Outcome{Step: "top-layer", Policy: shell,
				Console: noInitConsole}},
		{Name: "init= target missing", Cmdline: "init=/sbin/nosuch",
			Want: Outcome{Step: "top-layer", Policy: shell,
				Console: `not committed and docker_rwlayer is still the layer the last boot used: init /sbin/nosuch in the new root: .*no such file or directory; set init= to the image's init .*or add an init to the image(.|\n)*removed the unfinished rw layer`}},
		{Name: "init= target missing, keep=0", Cmdline: "init=/sbin/nosuch dockroot.keep=0",
			Want: Outcome{Step: "top-layer", Policy: shell,
				Console: `init /sbin/nosuch in the new root: .*no such file or directory`}},
		// Checked as exec(2) will run it (issue 17 item 4): a path the
		// kernel's walk refuses, or a loader the image lacks, must fail
		// before the commit, or keep=0 would lose the previous layer.
		{Name: "init= names a path through a missing directory (/nonexist/../sbin/init), keep=0", Cmdline: "init=/nonexist/../sbin/init dockroot.keep=0",
			Want: Outcome{Step: "top-layer", Policy: shell,
				Console: `not committed and docker_rwlayer is still the layer the last boot used: init /nonexist/\.\./sbin/init in the new root: /nonexist: no such file or directory; set init= `}},
		{Name: "init whose ELF interpreter is missing, keep=0", Cmdline: "init=/sbin/dyninit dockroot.keep=0",
			Disk: []Mutation{topELF("sbin/dyninit", "/lib/ld-dockroot-missing.so.1")},
			Want: Outcome{Step: "top-layer", Policy: shell,
				Console: `not committed and docker_rwlayer is still the layer the last boot used: init /sbin/dyninit in the new root: its ELF interpreter /lib/ld-dockroot-missing\.so\.1: /lib: no such file or directory; set init= .*or add /lib/ld-dockroot-missing\.so\.1 to the image`}},
		{Name: "image has no init, onfail=previous boots the previous layer as it was left", Cmdline: "docker_image=" + imageNoInit + " dockroot.onfail=previous",
			Want: Outcome{Booted: true, Fallback: layerName,
				Console: `!!! dockroot.onfail=previous: "apply the top layer" failed`}},

		// --- layers and state files ---
		{Name: "old layer holds nested subvolumes", Cmdline: "dockroot.keep=0",
			Disk: []Mutation{nestedSubvolumes(layerName+"/var/lib/machines", layerName+"/var/lib/machines/inner")},
			Want: Outcome{Booted: true, Image: "desk:1", Prev: PrevDeleted,
				Console: `rw layer: deleted docker_rwlayer.dockroot-tmp \(subvolume \d+\)`}},
		{Name: "layers.json corrupt, its backup good: recovered with a warning", Disk: []Mutation{writeFile(".dockroot/layers.json", `{"version":1,"layers":[`, 0o600)},
			Want: Outcome{Booted: true, Image: "desk:1",
				Console: `rw layer: WARNING: .*layers.json is unreadable .*; using its backup .*layers.json.bak`}},
		{Name: "layers.json and its backup corrupt", Disk: []Mutation{writeFile(".dockroot/layers.json", `{"version":1,"layers":[`, 0o600),
			writeFile(".dockroot/layers.json.bak", `{"version":1,"layers":[`, 0o600)},
			Want: Outcome{Step: "rw-layer", Policy: shell,
				Console: `dockroot layer state file is unreadable: .*layers.json: .*restore the file, or remove it and move the existing layers away once`}},
		{Name: "layers.json and its backup corrupt, onfail=previous", Cmdline: "dockroot.onfail=previous",
			Disk: []Mutation{writeFile(".dockroot/layers.json", `{"version":1,"layers":[`, 0o600), writeFile(".dockroot/layers.json.bak", "", 0o600)},
			Want: Outcome{Booted: true, Fallback: layerName,
				Console: `!!! dockroot.onfail=previous: "create the rw layer" failed`}},
		{Name: "state.json corrupt", Disk: []Mutation{writeFile(".dockroot/state.json", "{\"version\": 1, \"trying\": {", 0o600)},
			Want: Outcome{Booted: true, Image: "desk:1",
				Console: `count the boot \(optional\): failed .*: dockroot boot state file is unreadable: .*state.json: unexpected EOF; using the backup`}},
		// Issue 17 item 10: the rotation pauses only while a trial fails.
		// The first boot of a new image displaces the last good image's
		// layer, which rotates to NAME.prev.1 as always. (The paused case,
		// the displaced layer moving to NAME.failed, is not expressible
		// with Prev; rwlayer.TestLayersFailedTrialKeepsLastGood and
		// hook.TestBootFailedTrialKeepsLastGoodLayer prove it.)
		{Name: "a new image's first boot rotates the last good image's layer to NAME.prev.1", Cmdline: "docker_image=desk:2",
			Disk: []Mutation{{"state.json: desk:1, the layer's image, marked good", func(d *Disk) error {
				_, err := bootstate.MarkGood(d.Top, bootstate.Image{ID: d.F.images[d.F.fix.Desk1].ID, Ref: d.F.fix.Desk1})
				return err
			}}},
			Want: Outcome{Booted: true, Image: "desk:2",
				Console: `booting .*desk:2 \([0-9a-f]{12}\), attempt 1 of 3 until ` + "`dockroot mark-good`" + `(.|\n)*rw layer: rotated docker_rwlayer -> docker_rwlayer.prev.1`}},
	}
}

// noInitConsole is what an image without init shows: the init, the fix,
// and that the previous layer was kept.
const noInitConsole = `apply the top layer: failed .*: the new rw layer has no init that can run, so it was not committed and docker_rwlayer is still the layer the last boot used: ` +
	`the image has none of /sbin/init, /etc/init, /bin/init, /bin/sh: .*set init= to the image's init .*or add an init to the image(.|\n)*removed the unfinished rw layer`

// Paths in the fixture store.
const reposJSON = dockerPath + "/image/btrfs/repositories.json"

// --- mutations ---

func removeFile(p string) Mutation {
	return Mutation{"remove " + p, func(d *Disk) error { return os.Remove(d.path(p)) }}
}

func writeFile(p, data string, mode os.FileMode) Mutation {
	return Mutation{fmt.Sprintf("write %s (%q)", p, trim(data)), func(d *Disk) error {
		if err := os.MkdirAll(filepath.Dir(d.path(p)), 0o700); err != nil {
			return err
		}
		return os.WriteFile(d.path(p), []byte(data), mode)
	}}
}

func truncateFile(p string) Mutation {
	return Mutation{"truncate " + p + " to half its size", func(d *Disk) error {
		fi, err := os.Stat(d.path(p))
		if err != nil {
			return err
		}
		return os.Truncate(d.path(p), fi.Size()/2)
	}}
}

// imageFile is the path of one of ref's store files: its image config or
// its top layer's cache-id.
func imageFile(d *Disk, ref, which string) string {
	img := d.F.images[ref]
	if which == "config" {
		return dockerPath + "/image/btrfs/imagedb/content/sha256/" + strings.TrimPrefix(img.ID, "sha256:")
	}
	return dockerPath + "/image/btrfs/layerdb/sha256/" + strings.TrimPrefix(img.ChainID, "sha256:") + "/cache-id"
}

func removeImageFile(ref, which string) Mutation {
	return Mutation{fmt.Sprintf("remove %s's %s", ref, which), func(d *Disk) error { return os.Remove(d.path(imageFile(d, ref, which))) }}
}

func writeImageFile(ref, which, data string) Mutation {
	return Mutation{fmt.Sprintf("write %q into %s's %s", data, ref, which), func(d *Disk) error {
		return os.WriteFile(d.path(imageFile(d, ref, which)), []byte(data), 0o644)
	}}
}

func appendImageFile(ref, which, data string) Mutation {
	return Mutation{fmt.Sprintf("append %q to %s's %s", data, ref, which), func(d *Disk) error {
		f, err := os.OpenFile(d.path(imageFile(d, ref, which)), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}}
}

func deleteImageSubvolume(ref string) Mutation {
	return Mutation{"btrfs subvolume delete " + ref + "'s top layer subvolume", func(d *Disk) error {
		return run("btrfs", "subvolume", "delete", d.path(d.F.images[ref].Subvolume))
	}}
}

func userSubvolume(p string) Mutation {
	return Mutation{"the user's own subvolume " + p + " with a file in it", func(d *Disk) error {
		if err := run("btrfs", "subvolume", "create", d.path(p)); err != nil {
			return err
		}
		d.extraLayers = append(d.extraLayers, p)
		return os.WriteFile(d.path(p+"/"+markerFile), []byte("the user's own\n"), 0o644)
	}}
}

func nestedSubvolumes(paths ...string) Mutation {
	return Mutation{"nested subvolumes " + strings.Join(paths, ", "), func(d *Disk) error {
		for _, p := range paths {
			if err := os.MkdirAll(filepath.Dir(d.path(p)), 0o755); err != nil {
				return err
			}
			if err := run("btrfs", "subvolume", "create", d.path(p)); err != nil {
				return err
			}
		}
		return nil
	}}
}

func topFile(p, data string, mode os.FileMode) Mutation {
	return topFileOwned(p, data, mode, 0, 0)
}

func topFileOwned(p, data string, mode os.FileMode, uid, gid int) Mutation {
	return Mutation{fmt.Sprintf("top layer %s, mode %04o, owner %d:%d", p, mode, uid, gid), func(d *Disk) error {
		full := d.path(toplayerPath + "/" + p)
		if err := vmkit.WriteFiles(d.Top, []vmkit.File{{Path: toplayerPath + "/" + p, Data: data, Mode: mode}}); err != nil {
			return err
		}
		return os.Lchown(full, uid, gid)
	}}
}

// topELF puts an executable into the top layer: a dynamically linked
// x86-64 ELF (headers only) whose PT_INTERP is interp, as a glibc program
// names /lib64/ld-linux-x86-64.so.2. The kernel opens that loader before it
// runs anything, so exec fails with ENOENT when the image lacks it.
func topELF(p, interp string) Mutation {
	return Mutation{fmt.Sprintf("top layer %s: a dynamically linked ELF executable (mode 0755) whose interpreter %s the image lacks", p, interp), func(d *Disk) error {
		return vmkit.WriteFiles(d.Top, []vmkit.File{{Path: toplayerPath + "/" + p, Data: string(elfWithInterp(interp)), Mode: 0o755}})
	}}
}

// elfWithInterp returns the headers of an x86-64 ELF executable: a
// PT_INTERP naming interp and one PT_LOAD.
func elfWithInterp(interp string) []byte {
	hdr, ph := binary.Size(elf.Header64{}), binary.Size(elf.Prog64{})
	dataOff := uint64(hdr + 2*ph)
	progs := []elf.Prog64{
		{Type: uint32(elf.PT_INTERP), Flags: uint32(elf.PF_R), Off: dataOff,
			Filesz: uint64(len(interp) + 1), Memsz: uint64(len(interp) + 1), Align: 1},
		{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Vaddr: 0x400000, Paddr: 0x400000,
			Filesz: dataOff, Memsz: dataOff, Align: 0x1000},
	}
	h := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Entry: 0x400000, Phoff: uint64(hdr), Ehsize: uint16(hdr), Phentsize: uint16(ph), Phnum: uint16(len(progs)),
		Shentsize: uint16(binary.Size(elf.Section64{}))}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, h)
	binary.Write(&b, binary.LittleEndian, progs)
	b.WriteString(interp + "\x00")
	return b.Bytes()
}

func topSymlink(p, target string) Mutation {
	return Mutation{fmt.Sprintf("top layer symlink %s -> %s", p, target), func(d *Disk) error {
		full := d.path(toplayerPath + "/" + p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		return os.Symlink(d.F.expandOutside(target), full)
	}}
}

func chownTop(mode os.FileMode, uid, gid int) Mutation {
	return Mutation{fmt.Sprintf("the top layer's own directory is %04o %d:%d", mode, uid, gid), func(d *Disk) error {
		if err := os.Chmod(d.path(toplayerPath), mode); err != nil {
			return err
		}
		return os.Chown(d.path(toplayerPath), uid, gid)
	}}
}

func ext4Root() Mutation {
	return Mutation{"root= names a loop device holding ext4", func(d *Disk) error {
		loop, err := attachExt4(d, 16, "")
		d.Root = loop
		return err
	}}
}

func readOnly() Mutation {
	return Mutation{"the device is read-only (blockdev --setro)", func(d *Disk) error { return d.setReadOnly() }}
}

// bigToplayerDevice makes the top layer a separate ext4 device holding
// one file of sizeMB under big/, which must be copied (not reflinked) into
// the rw layer; {toplayer-dev} names it.
func bigToplayerDevice(sizeMB int) Mutation {
	return Mutation{fmt.Sprintf("top layer on an ext4 device with a %d MiB file", sizeMB), func(d *Disk) error {
		src := filepath.Join(d.T.TempDir(), "src")
		if err := os.MkdirAll(filepath.Join(src, "big"), 0o755); err != nil {
			return err
		}
		data := make([]byte, sizeMB<<20)
		for i := range data {
			data[i] = byte(i*7 + i>>13) // not all zeros: ext4 -d keeps zero blocks as holes
		}
		if err := os.WriteFile(filepath.Join(src, "big", "blob"), data, 0o644); err != nil {
			return err
		}
		loop, err := attachExt4(d, sizeMB+64, src)
		if err != nil {
			return err
		}
		d.vars["{toplayer-dev}"] = loop
		return nil
	}}
}

// leaveFree fills the filesystem until about freeMB remain: above the
// boot's 64 MiB minimum, so the failure comes mid-step.
func leaveFree(freeMB int64) Mutation {
	return Mutation{fmt.Sprintf("fill the filesystem until %d MiB are free", freeMB), func(d *Disk) error {
		var st syscall.Statfs_t
		if err := syscall.Statfs(d.Top, &st); err != nil {
			return err
		}
		size := int64(st.Bavail)*st.Bsize - freeMB<<20
		if size <= 0 {
			return nil
		}
		f, err := os.Create(d.path("filler"))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := syscall.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
			return fmt.Errorf("fallocate %d bytes: %w", size, err)
		}
		return run("sync")
	}}
}

// attachExt4 makes an ext4 image of sizeMB (from dir, if set) and
// attaches it to a loop device, detached when the case ends.
func attachExt4(d *Disk, sizeMB int, dir string) (string, error) {
	img := filepath.Join(d.T.TempDir(), "ext4.img")
	if err := vmkit.MakeImage(img, sizeMB, "ext4", "matrix-ext4", dir); err != nil {
		return "", err
	}
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		return "", fmt.Errorf("losetup %s: %w", img, err)
	}
	loop := strings.TrimSpace(string(out))
	d.T.Cleanup(func() { _ = exec.Command("losetup", "-d", loop).Run() })
	return loop, nil
}

// fillDisk fills the data space with one file, then small files until
// metadata is exhausted too (a snapshot needs metadata space only).
func fillDisk() Mutation {
	return Mutation{"fill the filesystem (data and metadata) with files", func(d *Disk) error {
		dir := d.path("filler")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		var st syscall.Statfs_t
		if err := syscall.Statfs(d.Top, &st); err != nil {
			return err
		}
		f, err := os.Create(filepath.Join(dir, "big"))
		if err != nil {
			return err
		}
		size := int64(st.Bavail) * st.Bsize
		for size > 1<<20 {
			if err := syscall.Fallocate(int(f.Fd()), 0, 0, size); err == nil {
				break
			}
			size /= 2
		}
		f.Close()
		// Inline extents live in metadata: small files fill it.
		for i := 0; ; i++ {
			err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("m%06d", i)), []byte(strings.Repeat("x", 2000)), 0o644)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				return err
			}
			if i > 2000000 {
				return errors.New("the disk never filled up")
			}
		}
		return run("sync")
	}}
}

// --- checks ---

func fileIs(p, want string) Check {
	return Check{fmt.Sprintf("%s on the disk holds %q", p, trim(want)), func(d *Disk, r *Result) error {
		got, err := os.ReadFile(d.path(p))
		if err != nil || string(got) != want {
			return fmt.Errorf("%s = %q, %v", p, got, err)
		}
		return nil
	}}
}

// rootPath is p in the layer the boot committed (NAME on the disk; the
// new root itself is unmounted by the time checks run).
func rootPath(d *Disk, p string) string { return d.path(layerName + "/" + p) }

func rootFileIs(p, want string) Check {
	return Check{fmt.Sprintf("/%s in the new root holds %q", p, trim(want)), func(d *Disk, r *Result) error {
		got, err := os.ReadFile(rootPath(d, p))
		if err != nil || string(got) != want {
			return fmt.Errorf("/%s = %q, %v", p, got, err)
		}
		return nil
	}}
}

func rootFileMode(p string, mode os.FileMode, uid, gid uint32) Check {
	return Check{fmt.Sprintf("/%s in the new root is %04o %d:%d", p, mode, uid, gid), func(d *Disk, r *Result) error {
		var st syscall.Stat_t
		if err := syscall.Lstat(rootPath(d, p), &st); err != nil {
			return err
		}
		if os.FileMode(st.Mode&0o7777) != mode || st.Uid != uid || st.Gid != gid {
			return fmt.Errorf("/%s is %04o %d:%d", p, st.Mode&0o7777, st.Uid, st.Gid)
		}
		return nil
	}}
}

func rootDirLikeImage(ref string) Check {
	return Check{"/ in the new root has the image root's mode and owner, not the top layer's", func(d *Disk, r *Result) error {
		var img, got syscall.Stat_t
		if err := syscall.Stat(d.path(d.F.images[ref].Subvolume), &img); err != nil {
			return err
		}
		if err := syscall.Stat(d.path(layerName), &got); err != nil {
			return err
		}
		if got.Mode != img.Mode || got.Uid != img.Uid || got.Gid != img.Gid {
			return fmt.Errorf("/ is %o %d:%d; the image's root is %o %d:%d", got.Mode, got.Uid, got.Gid, img.Mode, img.Uid, img.Gid)
		}
		return nil
	}}
}

func symlinkIs(p, target string) Check {
	return Check{fmt.Sprintf("/%s in the new root is a symlink to %s", p, target), func(d *Disk, r *Result) error {
		got, err := os.Readlink(rootPath(d, p))
		if err != nil || got != d.F.expandOutside(target) {
			return fmt.Errorf("readlink /%s = %q, %v", p, got, err)
		}
		return nil
	}}
}

func outsideUntouched() Check {
	return Check{"the host directory outside the root is still empty", func(d *Disk, r *Result) error {
		entries, err := os.ReadDir(d.F.outside)
		if err != nil {
			return err
		}
		if len(entries) != 0 {
			return fmt.Errorf("%s holds %d entries: a write escaped the new root", d.F.outside, len(entries))
		}
		return nil
	}}
}

func recordedImage(id string) Check {
	return Check{"boot.json records image " + id, func(d *Disk, r *Result) error {
		want := d.F.expand(id, "")
		if r.Record == nil || r.Record.ImageID != want {
			return fmt.Errorf("boot.json image_id = %v; want %s", r.Record, want)
		}
		return nil
	}}
}

// --- helpers ---

func (f *fixture) expandOutside(s string) string {
	return strings.ReplaceAll(s, "{outside}", f.outside)
}

func trim(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}

func run(argv ...string) error {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
