#include "contract.h"

#include <cstddef>
#include <initializer_list>
#include <utility>

#include "capture.h"
#include "event.h"
#include "matcher.h"
#include "packet.h"
#include "program.h"
#include "spa.h"

namespace knockd {
namespace {

using Entries = std::initializer_list<std::pair<const char*, double>>;

Napi::Object object_of(Napi::Env env, Entries entries) {
  Napi::Object out = Napi::Object::New(env);
  for (const auto& [name, value] : entries) out.Set(name, Napi::Number::New(env, value));
  return out;
}

// The counters' names in the order of their enums; a switch so that -Wswitch (-Werror) stops the build
// when a counter is added here or there but not named.
const char* matcher_stat_name(Stat s) {
  switch (s) {
    case kStatFrames: return "frames";
    case kStatMalformed: return "malformed";
    case kStatNotKnock: return "notKnock";
    case kStatInvisible: return "invisible";
    case kStatVisible: return "visible";
    case kStatStages: return "stages";
    case kStatCompleted: return "completed";
    case kStatFailedTimeout: return "failedTimeout";
    case kStatFailedWrongPort: return "failedWrongPort";
    case kStatEvicted: return "evicted";
    case kStatSuppressed: return "suppressed";
    case kStatEvictedProgressed: return "evictedProgressed";
    case kStatTracked: return "tracked";
    case kStatSpaAccepted: return "spaAccepted";
    case kStatSpaRejected: return "spaRejected";
    case kStatCount: break;
  }
  return "?";
}

const char* capture_stat_name(CaptureStat s) {
  switch (s) {
    case kCapRingPackets: return "ringPackets";
    case kCapRingDrops: return "ringDrops";
    case kCapRingFreezes: return "ringFreezes";
    case kCapBatches: return "batches";
    case kCapBatchesDropped: return "batchesDropped";
    case kCapFramesForwarded: return "framesForwarded";
    case kCapFilterCoarse: return "filterCoarse";
    case kCapCount: break;
  }
  return "?";
}

template <typename Enum>
Napi::Array names_of(Napi::Env env, size_t count, const char* (*name)(Enum)) {
  Napi::Array out = Napi::Array::New(env, count);
  for (size_t i = 0; i < count; i++) out.Set(uint32_t(i), Napi::String::New(env, name(Enum(i))));
  return out;
}

}  // namespace

Napi::Object BindingContract(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  Napi::Object record = object_of(env, {{"size", sizeof(EventRecord)}});
  record.Set("fields", object_of(env, {{"KIND", offsetof(EventRecord, kind)},
                                       {"REASON", offsetof(EventRecord, reason)},
                                       {"FAMILY", offsetof(EventRecord, family)},
                                       {"STAGE", offsetof(EventRecord, stage)},
                                       {"DOOR", offsetof(EventRecord, door)},
                                       {"SHARD", offsetof(EventRecord, shard)},
                                       {"GENERATION", offsetof(EventRecord, generation)},
                                       {"COUNT", offsetof(EventRecord, count)},
                                       {"TIME_US", offsetof(EventRecord, time_us)},
                                       {"ADDRESS", offsetof(EventRecord, addr)}}));
  c.Set("eventRecord", record);
  c.Set("eventKinds", object_of(env, {{"STAGE", kEventStage},
                                      {"COMPLETED", kEventCompleted},
                                      {"FAILED", kEventFailed},
                                      {"SUPPRESSED", kEventSuppressed},
                                      {"ERROR", kEventError},
                                      {"SPA", kEventSpa}}));
  c.Set("failReasons",
        object_of(env, {{"TIMEOUT", kFailTimeout}, {"WRONG_PORT", kFailWrongPort}, {"EVICTED", kFailEvicted}, {"SPA_AUTH", kFailSpaAuth}}));
  c.Set("engineErrors", object_of(env, {{"INTERFACE_DOWN", kErrInterfaceDown},
                                        {"INTERFACE_UP", kErrInterfaceUp},
                                        {"INTERFACE_REOPEN", kErrInterfaceReopen},
                                        {"CAPTURE_FAILED", kErrCaptureFailed}}));
  c.Set("matcherStats", names_of<Stat>(env, kStatCount, matcher_stat_name));
  c.Set("captureStats", names_of<CaptureStat>(env, kCapCount, capture_stat_name));

  Napi::Object program = object_of(env, {{"magic", kProgramMagic},
                                         {"version", kProgramVersion},
                                         {"headerWords", kHeaderWords},
                                         {"addressWords", kAddressWords},
                                         {"doorHeaderWords", kDoorHeaderWords},
                                         {"derivedWords", kDerivedWords},
                                         {"spaDoorWords", kSpaWords},
                                         {"maxSteps", kMaxSteps},
                                         {"maxCohort", kMaxCohort},
                                         {"maxTargets", kMaxTargets},
                                         {"maxDoors", kMaxDoors}});
  program.Set("header", object_of(env, {{"MAGIC", kHeaderMagic},
                                        {"VERSION", kHeaderVersion},
                                        {"GENERATION", kHeaderGeneration},
                                        {"FLAGS", kHeaderFlags},
                                        {"MAX_TRACKED", kHeaderMaxTracked},
                                        {"EVENT_BUDGET", kHeaderEventBudget},
                                        {"N_LOCAL", kHeaderLocals},
                                        {"N_TARGETS", kHeaderTargets},
                                        {"N_DOORS", kHeaderDoors},
                                        {"TOTAL_WORDS", kHeaderTotalWords}}));
  program.Set("flags", object_of(env, {{"STAGE_EVENTS", kFlagStageEvents}, {"ALL_LOCAL", kFlagAllLocal}, {"IGNORE_IPV6", kFlagIgnoreIpv6}}));
  program.Set("doorOptions", object_of(env, {{"ALLOW_DUPLICATES", kOptAllowDuplicates}, {"DERIVED", kOptDerived}, {"SPA", kOptSpa}}));
  c.Set("program", program);
  c.Set("protocols", object_of(env, {{"TCP", kProtoTcp}, {"UDP", kProtoUdp}, {"ICMP", kProtoIcmp}}));
  c.Set("spa", object_of(env, {{"minPayload", kSpaMinPayload}, {"maxPayload", kSpaMaxPayload}, {"hmacBase64Length", kSpaHmacB64Len}}));
  return c;
}

}  // namespace knockd
