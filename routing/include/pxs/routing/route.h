// Routing of stored instances to models (issue 12; Orthanc's routing of stored instances
// and Triton's model repository are the references). Each model of [[models]] has a
// route: conditions on what the instance's header says. An instance gets a scoring job
// for every enabled model whose route selects it; none selecting it means the instance is
// stored and recorded as "no model applies", with each route's reason.
#pragma once

#include <string>
#include <vector>

#include "pxs/common/status.h"

namespace pxs::routing {

// What the header says, as the SCP read it (texts trimmed, any case).
struct InstanceFacts {
  std::string modality;
  std::string sop_class_uid;
  std::string body_part;      // BodyPartExamined
  std::string view_position;  // ViewPosition
  std::string calling_ae;     // the association's calling AE ("" for file imports)
  std::string station_name;   // StationName
  int rows = 0;
  int columns = 0;
};

// Each list is "any of" (case-insensitive; "" in a list matches a missing attribute);
// an empty list does not restrict. Every condition must hold.
struct Route {
  std::vector<std::string> modality;
  std::vector<std::string> sop_class;
  std::vector<std::string> body_part;
  std::vector<std::string> view_position;
  std::vector<std::string> calling_ae;
  std::vector<std::string> station_name;
  int min_rows = 0;
  int min_columns = 0;

  // The route of a model whose config gives none: frontal chest radiographs (a missing
  // BodyPartExamined or ViewPosition is accepted: many CR/DX senders leave them empty).
  static Route DefaultChest();
};

// The keys a route table may have, for the config's "unknown key" errors.
const std::vector<std::string>& RouteKeys();

struct RoutedModel {
  std::string name;
  Route route;
};

struct Decision {
  std::vector<std::string> models;  // the models that score the instance, in config order
  std::string no_model_reason;      // when models is empty: why, per model
};

// Why `route` does not select the instance ("" when it does), e.g.
// "BodyPartExamined HAND is not one of CHEST, (none)".
std::string WhyNotSelected(const Route& route, const InstanceFacts& facts);

class Router {
 public:
  Router() = default;
  explicit Router(std::vector<RoutedModel> models) : models_(std::move(models)) {}
  Decision Decide(const InstanceFacts& facts) const;
  const std::vector<RoutedModel>& models() const { return models_; }

 private:
  std::vector<RoutedModel> models_;
};

}  // namespace pxs::routing
