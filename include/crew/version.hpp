#pragma once

// crew's version. CMake reads these three lines to set the project version, so
// keep their form: `#define CREW_VERSION_<PART> <number>`.
#define CREW_VERSION_MAJOR 0
#define CREW_VERSION_MINOR 2
#define CREW_VERSION_PATCH 0

#define CREW_VERSION_STRING "0.2.0"
