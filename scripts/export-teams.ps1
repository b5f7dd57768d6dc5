<#
.SYNOPSIS
  Read-only export of a tenant's Audio Conferencing users, bridge and settings, in the files
  `reconciler init TENANT --from users.csv --bridge bridge.json --settings settings.json` reads.

.DESCRIPTION
  Needs the MicrosoftTeams module (Connect-MicrosoftTeams) and Microsoft Graph PowerShell
  (Connect-MgGraph -Scopes User.Read.All) for licences. Nothing is changed in the tenant.

  Users are exported one at a time, appended to users.csv as they come, with progress: a full
  enumeration of Get-CsOnlineDialInConferencingUser can run for over an hour in a large tenant
  and fail when the token expires. Run the script again after a failure: users already in
  users.csv are skipped (resume).

  Properties read (Microsoft Learn, MicrosoftTeams cmdlet reference):
  - Get-CsOnlineDialInConferencingUser: Identity, SipAddress, DisplayName, ConferenceId,
    ServiceNumber, TollFreeServiceNumber, Provider (third-party ACP users report theirs).
  - Get-CsOnlineDialInConferencingBridge: ServiceNumbers (Number, Type, City), DefaultServiceNumber.
  - Get-CsOnlineDialInConferencingTenantSettings: AutomaticallySendEmailsToUsers,
    SendEmailFromOverride, SendEmailFromAddress, SendEmailFromDisplayName, PinLength,
    UseUniqueConferenceIds, AllowPSTNOnlyMeetingsByDefault, ... (as `reconciler` names them).
  - Get-MgUserLicenseDetail (Microsoft Graph): ServicePlans; the Audio Conferencing service plan
    is MCOMEETADV.

  A scheduled job signs in app-only instead (-TenantId, -ClientId, -CertificatePath: an app
  registration with a certificate, the Microsoft Entra role Teams Reader or Global Reader and
  the Microsoft Graph application permission User.Read.All); see docs/PIPELINES.md,
  "Drift on a schedule".

.EXAMPLE
  ./scripts/export-teams.ps1 -OutDirectory export
  reconciler init fabrikam --from export/users.csv --bridge export/bridge.json --settings export/settings.json

.EXAMPLE
  ./scripts/export-teams.ps1 -OutDirectory export -TenantId $tenant -ClientId $app -CertificatePath app.pfx
  reconciler drift --tenant fabrikam --from export/users.csv --bridge export/bridge.json --settings export/settings.json
#>
[CmdletBinding()]
param(
    [string] $OutDirectory = "export",
    [string] $TenantId,
    [string] $ClientId,
    [string] $CertificatePath
)
$ErrorActionPreference = "Stop"
if ($CertificatePath) {
    # App-only: the certificate's private key is never written to a certificate store.
    $certificate = [System.Security.Cryptography.X509Certificates.X509Certificate2]::new(
        (Resolve-Path $CertificatePath).Path, [string] $null, "EphemeralKeySet")
    Connect-MicrosoftTeams -Certificate $certificate -ApplicationId $ClientId -TenantId $TenantId | Out-Null
    Connect-MgGraph -Certificate $certificate -ClientId $ClientId -TenantId $TenantId -NoWelcome
}
New-Item -ItemType Directory -Force -Path $OutDirectory | Out-Null
$usersFile = Join-Path $OutDirectory "users.csv"

Get-CsOnlineDialInConferencingBridge | ConvertTo-Json -Depth 4 |
    Set-Content -Encoding utf8 (Join-Path $OutDirectory "bridge.json")
Get-CsOnlineDialInConferencingTenantSettings | ConvertTo-Json -Depth 2 |
    Set-Content -Encoding utf8 (Join-Path $OutDirectory "settings.json")

$done = @{}
if (Test-Path $usersFile) {
    Import-Csv $usersFile | ForEach-Object { $done[$_.UserPrincipalName.ToLower()] = $true }
}
# Only users licensed for Audio Conferencing (MCOMEETADV) or already configured for it.
$candidates = Get-MgUser -All -Property UserPrincipalName | Select-Object -ExpandProperty UserPrincipalName
$index = 0
foreach ($upn in $candidates) {
    $index++
    Write-Progress -Activity "Exporting Audio Conferencing users" -Status $upn `
        -PercentComplete (100 * $index / [Math]::Max(1, $candidates.Count))
    if ($done.ContainsKey($upn.ToLower())) { continue }
    $plans = (Get-MgUserLicenseDetail -UserId $upn).ServicePlans |
        Where-Object { $_.ServicePlanName -eq "MCOMEETADV" -and $_.ProvisioningStatus -ne "Disabled" }
    $user = Get-CsOnlineDialInConferencingUser -Identity $upn -ErrorAction SilentlyContinue
    if (-not $plans -and -not $user) { continue }
    [pscustomobject]@{
        UserPrincipalName     = $upn
        DisplayName           = $user.DisplayName
        ConferenceId          = $user.ConferenceId
        ServiceNumber         = $user.ServiceNumber
        TollFreeServiceNumber = $user.TollFreeServiceNumber
        Provider              = if ($user.Provider) { $user.Provider } else { "Microsoft" }
        License               = [bool] $plans
    } | Export-Csv -Path $usersFile -Append -NoTypeInformation -Encoding utf8
}
Write-Progress -Activity "Exporting Audio Conferencing users" -Completed
Write-Host "Wrote $usersFile, bridge.json and settings.json in $OutDirectory."
