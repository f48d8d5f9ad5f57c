package hook

import (
	"strings"

	"golang.org/x/sys/unix"
)

// mountFlag is one option mount(8) turns into a mount(2) flag instead of
// passing it to the filesystem.
type mountFlag struct {
	flag  uintptr
	clear bool // the option turns the flag off ("rw", "suid", ...)
}

// mountFlags is util-linux's table of generic options (mount(8), "FILESYSTEM-
// INDEPENDENT MOUNT OPTIONS"). Anything not here is filesystem data, e.g.
// btrfs's compress=zstd or subvol=.
var mountFlags = map[string]mountFlag{
	"defaults":    {},
	"ro":          {flag: unix.MS_RDONLY},
	"rw":          {flag: unix.MS_RDONLY, clear: true},
	"nosuid":      {flag: unix.MS_NOSUID},
	"suid":        {flag: unix.MS_NOSUID, clear: true},
	"nodev":       {flag: unix.MS_NODEV},
	"dev":         {flag: unix.MS_NODEV, clear: true},
	"noexec":      {flag: unix.MS_NOEXEC},
	"exec":        {flag: unix.MS_NOEXEC, clear: true},
	"sync":        {flag: unix.MS_SYNCHRONOUS},
	"async":       {flag: unix.MS_SYNCHRONOUS, clear: true},
	"dirsync":     {flag: unix.MS_DIRSYNC},
	"noatime":     {flag: unix.MS_NOATIME},
	"atime":       {flag: unix.MS_NOATIME, clear: true},
	"nodiratime":  {flag: unix.MS_NODIRATIME},
	"diratime":    {flag: unix.MS_NODIRATIME, clear: true},
	"relatime":    {flag: unix.MS_RELATIME},
	"norelatime":  {flag: unix.MS_RELATIME, clear: true},
	"strictatime": {flag: unix.MS_STRICTATIME},
	"lazytime":    {flag: unix.MS_LAZYTIME},
	"nolazytime":  {flag: unix.MS_LAZYTIME, clear: true},
	"silent":      {flag: unix.MS_SILENT},
	"loud":        {flag: unix.MS_SILENT, clear: true},
}

// MountOptions splits mount(8)-style options into mount(2) flags and the
// comma-joined filesystem data, in order (a later "rw" undoes an earlier
// "ro", as with mount(8)).
func MountOptions(opts []string) (flags uintptr, data string) {
	var rest []string
	for _, o := range opts {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if f, ok := mountFlags[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
			continue
		}
		rest = append(rest, o)
	}
	return flags, strings.Join(rest, ",")
}

func joinOpts(a, b string) string {
	if b == "" {
		return a
	}
	return a + "," + b
}
