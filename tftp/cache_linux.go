package tftp

import (
	"io/fs"
	"syscall"
)

// keyOf is the version of a file as its stat says.
func keyOf(fi fs.FileInfo) (fileKey, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, false
	}
	return fileKey{
		dev:   st.Dev,
		ino:   st.Ino,
		size:  fi.Size(),
		mtime: fi.ModTime().UnixNano(),
		ctime: st.Ctim.Nano(),
	}, true
}
