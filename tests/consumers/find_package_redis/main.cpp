// Builds against crew::redis from an install; bad options must throw, naming the option.
#include <crew/redis/consumer.hpp>
#include <crew/version.hpp>

#include <cstdio>
#include <stdexcept>
#include <string>

int main() {
  std::printf("crew %s via find_package_redis\n", CREW_VERSION_STRING);
  try {
    crew::redis::consumer<> c({}, [](crew::redis::message&) {}, {.workers = 1});
  } catch (const std::invalid_argument& e) {
    return std::string(e.what()).find("stream") != std::string::npos ? 0 : 1;
  }
  return 1;
}
