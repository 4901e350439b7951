// FHIR R4 intake of clinical observations on the node's HTTP server (issue 15,
// docs/hl7.md "FHIR"): POST /fhir/Observation (one Observation) and POST /fhir (a
// transaction or batch Bundle of Observations), JSON only. Errors are OperationOutcome
// resources naming the element (FHIRPath) and why; nothing of a refused request is
// stored. Private to http/.
#pragma once

#include <map>
#include <string>

#include "pxs/common/status.h"
#include "pxs/http/server.h"
#include "pxs/storage/observations.h"

namespace pxs::http {

// The FHIR request as the node's observations, or InvalidArgument whose message is
// "<FHIRPath>: <why>". sender is "fhir:<token name>".
StatusOr<ObservationMessage> ParseFhirObservations(const std::string& body, const std::string& path,
                                                   const std::string& sender,
                                                   const std::map<std::string, std::string>& authorities,
                                                   int64_t now_ms);

// An OperationOutcome with one issue, as the response body (application/fhir+json).
// code: a FHIR issue type (invalid, required, security, too-costly, ...).
std::string OperationOutcomeJson(const std::string& severity, const std::string& code, const std::string& diagnostics,
                                 const std::string& expression = "");
inline constexpr const char* kFhirJsonType = "application/fhir+json";

// Answers a request under /fhir (the token is already checked).
Response HandleFhir(const Request& request, const std::string& path, const Token& token, const Options& options);

}  // namespace pxs::http
