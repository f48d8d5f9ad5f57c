package vmkit

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// LUKSHeaderMB is how much of the disk LUKS2 takes: --reduce-device-size
// moves the data towards the end by this much, to make room for the header
// (half of it) at the start.
const LUKSHeaderMB = 32

// EncryptBtrfs puts the btrfs on image into a LUKS2 container in place,
// without device-mapper (which this machine's kernel lacks): it shrinks
// the filesystem so that LUKSHeaderMB are free at the end of the image,
// then runs cryptsetup's offline encryption (reencrypt --encrypt
// --reduce-device-size), which encrypts the data in user space and moves
// it behind the new header. The key slot uses PBKDF2 with 1000
// iterations, so that unlocking takes no time under TCG. It returns the
// LUKS UUID (cryptsetup luksUUID), for crypttab's UUID=. It needs root.
func EncryptBtrfs(image, passphrase string) (uuid string, err error) {
	err = WithMounted(image, "btrfs", func(top string) error {
		return run("btrfs", "filesystem", "resize", fmt.Sprintf("-%dm", LUKSHeaderMB), top)
	})
	if err != nil {
		return "", fmt.Errorf("shrink the btrfs on %s for the LUKS header: %w", image, err)
	}
	argv := []string{"cryptsetup", "reencrypt", "--batch-mode", "--encrypt", "--type", "luks2",
		"--reduce-device-size", fmt.Sprintf("%dM", LUKSHeaderMB),
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
		"--key-file", "-", image}
	if err := runStdin(passphrase, argv...); err != nil {
		return "", err
	}
	out, err := exec.Command("cryptsetup", "luksUUID", image).Output()
	if err != nil {
		return "", fmt.Errorf("cryptsetup luksUUID %s: %w", image, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// AddLUKSKey adds key (a keyfile's contents) to a free key slot of the
// LUKS container on image, unlocked with passphrase. It needs no
// device-mapper: only the header changes.
func AddLUKSKey(image, passphrase string, key []byte) error {
	f, err := os.CreateTemp("", "vmkit-luks-key-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(key); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return runStdin(passphrase, "cryptsetup", "luksAddKey", "--batch-mode",
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", "-", image, f.Name())
}

// runStdin runs argv with stdin as its standard input (cryptsetup's
// --key-file -), and returns its output in the error.
func runStdin(stdin string, argv ...string) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, out)
	}
	return nil
}
