//go:build !unix

package httpd

import "io/fs"

// fileID has no inode to offer here; size and mtime still make the ETag.
func fileID(fs.FileInfo) (dev, ino uint64) { return 0, 0 }
