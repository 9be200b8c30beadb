-- Argo CD health check for ajan's RemediationPlan (aiops.ajan.dev/v1alpha1), by status.phase
-- (operator/ajan/models/plan.py, PlanPhase; docs/actions.md):
--   no phase yet, Proposed, Approved, Executing    -> Progressing (the plan is under way; Proposed
--                                                    in approve mode waits for a person)
--   Executed, DryRun, Resolved, Superseded,        -> Healthy (settled: done, recorded (dry-run),
--   Rejected                                          no longer needed, replaced by a newer plan,
--                                                    or declined)
--   Failed                                         -> Degraded (the action could not be applied)
--   Expired                                        -> Degraded (no approval came in time: the
--                                                    proposed action was never taken)
--   anything else                                  -> Unknown
-- The message is the phase's condition's message where there is one (AwaitingApproval, DryRun,
-- Throttled, Failed, ...). Installed as argocd-cm's
-- resource.customizations.health.aiops.ajan.dev_RemediationPlan (argocd-cm-patch.yaml holds this
-- file verbatim; tests/monitoring/test_argocd.py runs it with Lua 5.1, as Argo CD's gopher-lua).
local hs = {}

local function condition(type_)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type_ and c.status == "True" then
      return c
    end
  end
  return nil
end

local function message_of(types, fallback)
  for _, type_ in ipairs(types) do
    local c = condition(type_)
    if c ~= nil and c.message ~= nil and c.message ~= "" then
      return c.message
    end
  end
  return fallback
end

local phase = nil
if obj.status ~= nil then
  phase = obj.status.phase
end
local action = "the action"
if obj.spec ~= nil and obj.spec.action ~= nil then
  action = obj.spec.action
end

if phase == nil or phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to record the plan"
elseif phase == "Proposed" then
  hs.status = "Progressing"
  hs.message = message_of({"AwaitingApproval", "Throttled"}, "Proposed: " .. action .. " waits for execution")
elseif phase == "Approved" then
  hs.status = "Progressing"
  hs.message = message_of({"Approved", "Throttled"}, "Approved: " .. action .. " is next")
elseif phase == "Executing" then
  hs.status = "Progressing"
  hs.message = message_of({"Executing"}, "Sending " .. action .. " to the Rollout")
elseif phase == "Executed" then
  hs.status = "Healthy"
  hs.message = message_of({"Executed"}, action .. " applied")
elseif phase == "DryRun" then
  hs.status = "Healthy"
  hs.message = message_of({"DryRun"}, "Dry-run: " .. action .. " recorded, not sent")
elseif phase == "Resolved" then
  hs.status = "Healthy"
  hs.message = message_of({"Resolved"}, "The anomaly ended")
elseif phase == "Superseded" then
  hs.status = "Healthy"
  hs.message = message_of({"Superseded"}, "Replaced by a newer plan")
elseif phase == "Rejected" then
  hs.status = "Healthy"
  hs.message = message_of({"Rejected"}, "Rejected: " .. action .. " was not taken")
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = message_of({"Failed"}, action .. " could not be applied")
elseif phase == "Expired" then
  hs.status = "Degraded"
  hs.message = message_of({"Expired"}, "No approval in time: " .. action .. " was not taken")
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
