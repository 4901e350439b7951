// libFuzzer target: the FHIR R4 reader of the web face (POST /fhir/Observation and a
// transaction/batch Bundle on POST /fhir): any body gives observations or an
// InvalidArgument naming the element; the OperationOutcome built from that message must
// stay JSON (nlohmann-json parses it back).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "fhir.h"  // http/src: the reader is private to the web face

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  static const std::map<std::string, std::string> authorities = {{"HOSP", "TESTS"}};
  for (const char* path : {"/fhir/Observation", "/fhir"}) {
    auto parsed = pxs::http::ParseFhirObservations(body, path, "fhir:fuzz", authorities, 1'767'225'600'000);
    if (parsed.ok()) continue;
    const std::string outcome = pxs::http::OperationOutcomeJson("error", "invalid", parsed.status().message());
    if (!nlohmann::json::accept(outcome)) std::abort();
  }
  return 0;
}
