package vm

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// The encrypted root of the initramfs-tools tests: the btrfs holding the
// Docker store, the image and the top layer inside a LUKS2 container,
// opened by Debian's cryptsetup-initramfs as /dev/mapper/cryptroot.
const (
	luksName       = "cryptroot"
	luksPassphrase = "dockroot luks test"
	// luksKeyfile is where the keyfile variant's key lives in the Debian
	// root, matched by KEYFILE_PATTERN so the cryptroot hook copies it
	// into the initramfs.
	luksKeyfile = "/etc/cryptsetup-keys.d/cryptroot.key"
	luksHost    = "itools-luks-host"
)

// rootfsMarkerScript is itoolsMarkerScript with one more line: what / is
// mounted from, so the test sees which layer is / and on which device.
var rootfsMarkerScript = strings.Replace(itoolsMarkerScript, "{\n",
	"{\n\techo \"DOCKROOT-ROOTFS source=$(findmnt -no SOURCE /) fstype=$(findmnt -no FSTYPE /)\"\n", 1)

// luksDisk builds the Debian systemd image's disk (rootfsDisk) and
// encrypts it in place (vmkit.EncryptBtrfs). It returns the disk and the
// LUKS UUID.
func luksDisk(t *testing.T) (disk, uuid string) {
	t.Helper()
	disk = rootfsDisk(t)
	start := time.Now()
	uuid, err := vmkit.EncryptBtrfs(disk, luksPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("disk encrypted in place (LUKS2 UUID %s) in %v", uuid, time.Since(start).Round(time.Second))
	return disk, uuid
}

// rootfsDisk builds the disk of the initramfs-tools tests as
// TestInitramfsTools does, with rootfsMarkerScript in the image.
func rootfsDisk(t *testing.T) string {
	t.Helper()
	return debianDisk(t, 1536, "debian-itools:1", rootfsMarkerScript, luksHost)
}

// luksInitrd builds the initramfs as a Debian user with an encrypted root
// does: initramfs-tools, cryptsetup-initramfs and btrfs-progs in a Debian
// root (cached), dockroot installed as `make install` lays it out, the
// crypttab line (and the extra files), and update-initramfs.
func luksInitrd(t *testing.T, crypttab string, extra ...vmkit.File) (initrd, vmlinuz string) {
	t.Helper()
	p, k := product(t), Kernel(t)
	cache, err := vmkit.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	root, err := vmkit.ItoolsLUKSRoot(cache, "bookworm", k)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Debian root with initramfs-tools and cryptsetup-initramfs %s ready in %v", root, time.Since(start).Round(time.Second))
	repo, err := vmkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files := append([]vmkit.File{{Path: "etc/crypttab", Data: crypttab}}, extra...)
	for src, dst := range itoolsInstall(repo, p.Init) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, vmkit.File{Path: dst, Mode: 0o755, Data: string(b)})
	}
	start = time.Now()
	initrd, vmlinuz, err = vmkit.UpdateInitramfs(root, k.Version, files, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("update-initramfs with cryptsetup-initramfs took %v", time.Since(start).Round(time.Second))
	return initrd, vmlinuz
}

// luksCmdline is the ancestor's command line with root= naming the opened
// container, as Debian's installer writes it for an encrypted root.
var luksCmdline = strings.Replace(ancestorParam, "root=LABEL="+rootLabel, "root=/dev/mapper/"+luksName, 1) +
	" docker_image=debian-itools:1"

// itoolsOpened is what Debian's cryptroot script prints once it opened
// the container.
const itoolsOpened = luksName + ": set up successfully"

var luksRootRE = regexp.MustCompile(`DOCKROOT-ROOTFS source=(\S*) fstype=(\S*)`)

// checkLUKSBoot checks a boot of the encrypted disk: the console says the
// container was opened (opened) before dockroot's first step, the fresh
// layer was made on the opened container /dev/mapper/<mapper> and is /,
// the image's systemd reached multi-user.target with the top layer
// applied, and boot.json is there.
func checkLUKSBoot(t *testing.T, console string, rec *bootRecord, mapper, opened string) {
	t.Helper()
	m := itoolsMarkerRE.FindStringSubmatch(console)
	if m == nil {
		t.Fatalf("marker line incomplete:\n%s", vmkit.Tail(console, 40))
	}
	if m[1] != "active" || m[2] != "systemd" || m[3] != luksHost || m[4] != "none" || m[5] != "yes" {
		t.Errorf("booted Debian: multi-user.target %s, PID 1 %s, hostname %s, stale file %s, boot.json %s; want active, systemd, %s (the top layer), none, yes",
			m[1], m[2], m[3], m[4], m[5], luksHost)
	}
	at := strings.Index(console, opened)
	first := strings.Index(console, "dockroot: [1/15]")
	if at < 0 || first < at {
		t.Errorf("%q is not on the console before dockroot's first step (at %d, first step at %d): the container was not opened first", opened, at, first)
	}
	r := luksRootRE.FindStringSubmatch(console)
	if want := "/dev/mapper/" + mapper + "[/" + rwLayer + "]"; r == nil || r[1] != want || r[2] != "btrfs" {
		t.Errorf("/ is mounted from %v, want %s (btrfs)", r, want)
	}
	if rec == nil {
		t.Fatalf("no boot.json on the console:\n%s", vmkit.Tail(console, 40))
	}
	if rec.Layer.Subvolume != rwLayer || !rec.Layer.Fresh || rec.Toplayer == nil {
		t.Errorf("boot.json rw layer %+v, top layer %+v; want a fresh %s with the top layer", rec.Layer, rec.Toplayer, rwLayer)
	}
	if !strings.Contains(rec.RootDevice, "dm-") && !strings.Contains(rec.RootDevice, "mapper/"+mapper) {
		t.Errorf("boot.json root device %q, want the opened container", rec.RootDevice)
	}
}

// stillLUKS checks that the disk the VM wrote is a LUKS container still,
// with no btrfs visible on it from outside.
func stillLUKS(t *testing.T, disk, uuid string) {
	t.Helper()
	out, err := testenv.Output("blkid", "-p", "-o", "export", disk)
	if err != nil || !strings.Contains(out, "TYPE=crypto_LUKS") || !strings.Contains(out, "UUID="+uuid) {
		t.Errorf("after the boot, blkid -p %s: %v\n%s\nwant the LUKS container %s", disk, err, out, uuid)
	}
}

// TestInitramfsToolsLUKS: the btrfs holding the Docker store, the image
// and the top layer is inside a LUKS2 container. Debian's
// cryptsetup-initramfs asks for the passphrase on the serial console; the
// test types it; dockroot then makes the fresh layer inside the opened
// container and initramfs-tools mounts it as /.
//
// Full tier: measured on a loaded machine (load ~22 on 2 cores) it took
// 26 min, 14 of them update-initramfs and 10 the boot; it moves to the CI
// selection once a quiet run shows the boot under 4 minutes.
func TestInitramfsToolsLUKS(t *testing.T) {
	testenv.RequireFullVM(t, "initramfs-tools opens the LUKS root with the passphrase typed on the console")
	testenv.RequireRoot(t, "debootstrap", "chroot", "cryptsetup")
	disk, uuid := luksDisk(t)
	// The README's crypttab line for an encrypted root.
	initrd, vmlinuz := luksInitrd(t, fmt.Sprintf("%s UUID=%s none luks,initramfs\n", luksName, uuid))

	start := time.Now()
	vm := Boot(t, vmkit.Options{Kernel: vmlinuz, Initrd: initrd, Append: luksCmdline + " printk.devkmsg=on", Drives: []vmkit.Drive{{File: disk}}})
	expect(t, vm, "Please unlock disk "+luksName, 300*time.Second)
	t.Logf("passphrase prompt after %v", time.Since(start).Round(time.Second))
	// askpass turns echo off (discarding pending input) and then prints
	// the prompt; a moment's pause keeps the line from racing that.
	time.Sleep(2 * time.Second)
	if err := vm.Send(luksPassphrase + "\n"); err != nil {
		t.Fatal(err)
	}
	expect(t, vm, "DOCKROOT-BOOTJSON-END", 600*time.Second)
	if err := vm.WaitExit(180 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("boot with the passphrase typed took %v", time.Since(start).Round(time.Second))
	checkLUKSBoot(t, vm.Console.String(), parseBootJSON(t, vm.Console.String()), luksName, itoolsOpened)
	stillLUKS(t, disk, uuid)
}

// TestInitramfsToolsLUKSKeyfile: the same encrypted root unlocked with a
// keyfile that the cryptroot hook bakes into the initramfs
// (KEYFILE_PATTERN), as unattended machines do: nobody types anything.
func TestInitramfsToolsLUKSKeyfile(t *testing.T) {
	testenv.RequireFullVM(t, "initramfs-tools opens the LUKS root with a keyfile in the initramfs")
	testenv.RequireRoot(t, "debootstrap", "chroot", "cryptsetup")
	disk, uuid := luksDisk(t)
	key := []byte("dockroot keyfile for the VM test\n")
	if err := vmkit.AddLUKSKey(disk, luksPassphrase, key); err != nil {
		t.Fatal(err)
	}
	initrd, vmlinuz := luksInitrd(t, fmt.Sprintf("%s UUID=%s %s luks,initramfs\n", luksName, uuid, luksKeyfile),
		vmkit.File{Path: strings.TrimPrefix(luksKeyfile, "/"), Mode: 0o600, Data: string(key)},
		vmkit.File{Path: "etc/cryptsetup-initramfs/conf-hook", Data: "KEYFILE_PATTERN=\"/etc/cryptsetup-keys.d/*.key\"\n"},
		vmkit.File{Path: "etc/initramfs-tools/conf.d/umask", Data: "UMASK=0077\n"},
	)

	start := time.Now()
	vm := Boot(t, vmkit.Options{Kernel: vmlinuz, Initrd: initrd, Append: luksCmdline, Drives: []vmkit.Drive{{File: disk}}})
	expect(t, vm, "DOCKROOT-BOOTJSON-END", 600*time.Second)
	if err := vm.WaitExit(180 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("boot with the keyfile took %v", time.Since(start).Round(time.Second))
	console := vm.Console.String()
	if strings.Contains(console, "Please unlock disk") {
		t.Errorf("cryptsetup asked for a passphrase although the initramfs holds the keyfile")
	}
	checkLUKSBoot(t, console, parseBootJSON(t, console), luksName, itoolsOpened)
	stillLUKS(t, disk, uuid)
}

// dracutLUKSKey is where the dracut LUKS test's keyfile lives in the
// Debian root and, through install_items, in the initramfs; the kernel
// command line names it with rd.luks.key=.
const dracutLUKSKey = "/etc/cryptsetup-keys.d/dockroot-root.key"

// TestDracutLUKS: the encrypted root of the initramfs-tools LUKS tests,
// opened by dracut's crypt module in its systemd initramfs:
// rd.luks.uuid= makes systemd-cryptsetup-generator's
// systemd-cryptsetup@luks-UUID.service, which unlocks it with the keyfile
// named by rd.luks.key= that dracut.conf.d's install_items baked into the
// initramfs; dockroot-prepare.service (After=cryptsetup.target) then makes
// the fresh layer inside the opened container, and systemd mounts
// root=LABEL=linux, the btrfs inside, with rootflags=subvol=.
func TestDracutLUKS(t *testing.T) {
	testenv.RequireFullVM(t, "dracut's crypt module opens the LUKS root with a keyfile in the initramfs, then dockroot's module makes the layer inside")
	testenv.RequireRoot(t, "debootstrap", "chroot", "cryptsetup")
	disk, uuid := luksDisk(t)
	key := []byte("dockroot dracut keyfile for the VM test\n")
	if err := vmkit.AddLUKSKey(disk, luksPassphrase, key); err != nil {
		t.Fatal(err)
	}
	// The README's lines for an encrypted root with dracut: the crypt
	// module, and the keyfile in the initramfs.
	args := append([]string{"--add", "crypt"}, dracutArgs...)
	initrd, vmlinuz, err := buildDracut(t, "dracut-luks", args,
		vmkit.File{Path: strings.TrimPrefix(dracutLUKSKey, "/"), Mode: 0o600, Data: string(key)},
		vmkit.File{Path: "etc/dracut.conf.d/dockroot-luks-key.conf", Data: `install_items+=" ` + dracutLUKSKey + ` "` + "\n"},
	)
	if err != nil {
		t.Fatal(err)
	}
	h := dracutHooked(initrd, vmlinuz)
	mapper := "luks-" + uuid
	console, _, rec := h.boot(t, disk, ancestorParam+" docker_image=debian-itools:1 rd.luks.uuid="+uuid+" rd.luks.key="+dracutLUKSKey)
	if strings.Contains(console, "Please enter passphrase") {
		t.Errorf("systemd-cryptsetup asked for a passphrase although the initramfs holds the keyfile")
	}
	// systemd's status line, the unit's name shortened to the console's
	// width: "Finished systemd-cryptsetu…<end of the UUID>.".
	checkLUKSBoot(t, console, rec, mapper, "Finished systemd-cryptsetu")
	if handed, mounted := strings.Index(console, handedOver), strings.Index(console, "Mounted sysroot.mount"); handed < 0 || mounted < handed {
		t.Errorf("dockroot handed the root over at console offset %d, systemd mounted /sysroot at %d: want both, dockroot first", handed, mounted)
	}
	stillLUKS(t, disk, uuid)
}
