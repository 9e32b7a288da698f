#ifndef SWIFTRESNET_CZLIB_SHIM_H
#define SWIFTRESNET_CZLIB_SHIM_H
#include <zlib.h>
#endif
