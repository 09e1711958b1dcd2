-- Argo CD health check for harperoperator.dev HarperCluster and HarperNode (one script for both).
-- The operator writes kstatus-style conditions (Ready, Reconciling, Stalled) and observedGeneration.
--   Healthy      Ready=True, computed for the object's current generation
--   Progressing  no status yet, generation not observed yet, Reconciling=True, or Ready not decided
--   Degraded     Stalled=True (a person must act: the message says what), or Ready=False while idle
--   Suspended    reconciles paused by the annotation harperoperator.dev/paused and not Ready
-- The message is the deciding condition's reason and message.
-- Argo CD gives ConfigMap health scripts only Lua 5.1's base and table libraries (no string, math):
-- this script uses nothing else.
local hs = {}

local function condition(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  local parts = {}
  if c.reason ~= nil and c.reason ~= "" then
    table.insert(parts, c.reason)
  end
  if c.message ~= nil and c.message ~= "" then
    table.insert(parts, c.message)
  end
  if #parts == 0 then
    return fallback
  end
  return table.concat(parts, ": ")
end

local function paused(metadata)
  if metadata == nil or metadata.annotations == nil then
    return false
  end
  local value = metadata.annotations["harperoperator.dev/paused"]
  if value == nil then
    return false
  end
  -- Argo CD runs health scripts without Lua's string library: compare the spellings one by one.
  local truthy = {["true"] = true, ["True"] = true, ["TRUE"] = true, ["yes"] = true, ["Yes"] = true,
    ["YES"] = true, ["1"] = true}
  return truthy[value] == true
end

local metadata = obj.metadata or {}
local generation = metadata.generation
local status = obj.status

if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local observed = status.observedGeneration
if observed == nil or (generation ~= nil and observed ~= generation) then
  hs.status = "Progressing"
  if generation ~= nil then
    hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  else
    hs.message = "Waiting for the operator to observe this object"
  end
  return hs
end

local stalled = condition(status.conditions, "Stalled")
local ready = condition(status.conditions, "Ready")
local reconciling = condition(status.conditions, "Reconciling")

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

if ready ~= nil and ready.status == "True" then
  if ready.observedGeneration ~= nil and generation ~= nil and ready.observedGeneration ~= generation then
    hs.status = "Progressing"
    hs.message = "Ready is from generation " .. tostring(ready.observedGeneration) .. ", waiting for " ..
      tostring(generation)
    return hs
  end
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

if paused(metadata) then
  hs.status = "Suspended"
  hs.message = "Reconciles paused by the annotation harperoperator.dev/paused"
  return hs
end

if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  if reconciling.message ~= nil and reconciling.message ~= "" then
    hs.message = describe(reconciling, "Reconciling")
  else
    hs.message = describe(ready, describe(reconciling, "Reconciling"))
  end
  return hs
end

if ready == nil or ready.status ~= "False" then
  hs.status = "Progressing"
  hs.message = describe(ready, "Waiting for the Ready condition")
  return hs
end

hs.status = "Degraded"
hs.message = describe(ready, "Not ready")
return hs
