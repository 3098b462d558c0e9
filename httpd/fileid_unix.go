//go:build unix

package httpd

import (
	"io/fs"
	"syscall"
)

// fileID is the file's device and inode, for ETags.
func fileID(fi fs.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino)
	}
	return 0, 0
}
