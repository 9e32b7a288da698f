#ifndef SWIFTRESNET_CPNG_SHIM_H
#define SWIFTRESNET_CPNG_SHIM_H
// libpng from Debian's libpng-dev (the simplified png_image API is enough for us).
#include <png.h>
#endif
