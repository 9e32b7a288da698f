#ifndef SWIFTRESNET_CJPEG_SHIM_H
#define SWIFTRESNET_CJPEG_SHIM_H
// libjpeg-turbo from Debian's libjpeg-dev. jpeglib.h needs stdio's FILE and size_t first.
#include <stdio.h>
#include <stddef.h>
#include <jpeglib.h>
#endif
