#ifndef SWIFTRESNET_CTURBOJPEG_SHIM_H
#define SWIFTRESNET_CTURBOJPEG_SHIM_H
// TurboJPEG from Debian's libturbojpeg0-dev (libjpeg-turbo). Unlike the libjpeg API, whose
// default error handler calls exit() and whose recovery needs setjmp/longjmp (unavailable in
// Swift), every TurboJPEG call returns an error code and keeps the message in its handle.
#include <turbojpeg.h>
#endif
